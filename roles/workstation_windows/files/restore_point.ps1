# Copyright: clinical-upgrade contributors
# Apache License 2.0
#
# workstation_windows restore_point: take a System Restore point on client Windows and report it.
# Run by ansible.windows.win_powershell (Windows PowerShell 5.1: Checkpoint-Computer is not in
# PowerShell 7). Sets $Ansible.Result = {created, sequence_number, description, creation_time} or
# {created: false, message}.
[CmdletBinding()]
param (
    [Parameter(Mandatory = $true)]
    [string]$Description
)

$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
$key = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SystemRestore'
$drive = "$env:SystemDrive\"
$fix = "turn System Restore on for $drive (Enable-ComputerRestore -Drive '$drive', or System Properties > System Protection), " +
"or set workstation_windows_restore_point: false to go on without one"

$lastBefore = (@(Get-ComputerRestorePoint -ErrorAction SilentlyContinue) | Measure-Object -Property SequenceNumber -Maximum).Maximum

# Windows creates at most one restore point in SystemRestorePointCreationFrequency minutes (1440 when
# unset) and skips the others without an error: 0 for this call, the previous setting back after it.
$previous = (Get-ItemProperty -LiteralPath $key -Name SystemRestorePointCreationFrequency -ErrorAction SilentlyContinue).SystemRestorePointCreationFrequency
try {
    New-ItemProperty -LiteralPath $key -Name SystemRestorePointCreationFrequency -PropertyType DWord -Value 0 -Force | Out-Null
    Checkpoint-Computer -Description $Description -RestorePointType MODIFY_SETTINGS
}
catch {
    $Ansible.Failed = $true
    $Ansible.Result = @{
        created = $false
        message = "Checkpoint-Computer failed: $($_.Exception.Message). The Volume Shadow Copy service must be able to start; $fix"
    }
    return
}
finally {
    if ($null -eq $previous) {
        Remove-ItemProperty -LiteralPath $key -Name SystemRestorePointCreationFrequency -ErrorAction SilentlyContinue
    }
    else {
        Set-ItemProperty -LiteralPath $key -Name SystemRestorePointCreationFrequency -Value $previous
    }
}

$point = @(Get-ComputerRestorePoint | Where-Object { $_.SequenceNumber -gt $lastBefore }) |
    Sort-Object -Property SequenceNumber | Select-Object -Last 1
if (-not $point) {
    $Ansible.Failed = $true
    $Ansible.Result = @{
        created = $false
        message = "Checkpoint-Computer returned, but Get-ComputerRestorePoint lists no new restore point: System Restore is off for $drive; $fix"
    }
    return
}

$Ansible.Changed = $true
$Ansible.Result = @{
    created = $true
    sequence_number = [int]$point.SequenceNumber
    description = [string]$point.Description
    creation_time = [string]$point.CreationTime
}
