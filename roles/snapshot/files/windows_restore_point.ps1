# Copyright: clinical-upgrade contributors
# Apache License 2.0
#
# snapshot provider windows_restore_point: a System Restore point of a physical client Windows
# workstation (Windows 10/11; Windows Server has no System Restore). Run by
# ansible.windows.win_powershell (Windows PowerShell 5.1: the System Restore cmdlets are not in
# PowerShell 7). One script, four actions:
#   create  - Checkpoint-Computer; Result {created, sequence_number, description, creation_time, drive}
#   restore - SystemRestore.Restore(<sequence number>) (root/default WMI), which schedules the restore for
#             the next start; the caller restarts Windows (win_reboot). Restore-Computer does the same and
#             then restarts by itself, which would cut the WinRM session the result comes back on.
#   status  - SystemRestore.GetLastRestoreStatus(): 1 succeeded, 0 failed, 2 interrupted
#   remove  - SRRemoveRestorePoint(<sequence number>) of srclient.dll (removes that one point only)
[CmdletBinding()]
param (
    [Parameter(Mandatory = $true)]
    [ValidateSet('create', 'restore', 'status', 'remove')]
    [string]$Action,

    [string]$Description = 'clinical-upgrade',

    [int]$SequenceNumber = 0
)

$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
$drive = "$env:SystemDrive\"
$os = Get-CimInstance -ClassName Win32_OperatingSystem
if ([int]$os.ProductType -ne 1) {
    $Ansible.Failed = $true
    $Ansible.Result = @{
        message = "$($os.Caption) has no System Restore: snapshot a Windows Server with the vmware or proxmox provider"
    }
    return
}

function Get-Point([int]$Number) {
    @(Get-ComputerRestorePoint -ErrorAction SilentlyContinue) | Where-Object { [int]$_.SequenceNumber -eq $Number } |
        Select-Object -First 1
}

switch ($Action) {
    'create' {
        $key = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SystemRestore'
        $fix = "turn System Restore on for $drive (Enable-ComputerRestore -Drive '$drive', or System Properties > " +
        "System Protection), or give the workstation another snapshot_provider"
        $lastBefore = (@(Get-ComputerRestorePoint -ErrorAction SilentlyContinue) |
            Measure-Object -Property SequenceNumber -Maximum).Maximum
        # Windows creates at most one restore point in SystemRestorePointCreationFrequency minutes
        # (1440 when unset) and skips the others without an error: 0 for this call, then put back.
        $previous = (Get-ItemProperty -LiteralPath $key -Name SystemRestorePointCreationFrequency -ErrorAction SilentlyContinue).SystemRestorePointCreationFrequency
        try {
            New-ItemProperty -LiteralPath $key -Name SystemRestorePointCreationFrequency -PropertyType DWord -Value 0 -Force | Out-Null
            Checkpoint-Computer -Description $Description -RestorePointType MODIFY_SETTINGS
        }
        catch {
            $Ansible.Failed = $true
            $Ansible.Result = @{ created = $false; message = "Checkpoint-Computer failed: $($_.Exception.Message); $fix" }
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
            drive = $drive
        }
    }
    'restore' {
        if (-not (Get-Point $SequenceNumber)) {
            $Ansible.Failed = $true
            $Ansible.Result = @{
                scheduled = $false
                message = "restore point #$SequenceNumber is no longer on $env:COMPUTERNAME (Windows removes the oldest " +
                "points when their disk space is needed, and a feature update removes them all): it cannot be restored"
            }
            return
        }
        $answer = Invoke-CimMethod -Namespace root/default -ClassName SystemRestore -MethodName Restore -Arguments @{
            SequenceNumber = [uint32]$SequenceNumber
        }
        if ([int]$answer.ReturnValue -ne 0) {
            $Ansible.Failed = $true
            $Ansible.Result = @{
                scheduled = $false
                message = "SystemRestore.Restore($SequenceNumber) returned $($answer.ReturnValue); see the event log (Application, source SystemRestore)"
            }
            return
        }
        $Ansible.Changed = $true
        $Ansible.Result = @{ scheduled = $true; sequence_number = $SequenceNumber }
    }
    'status' {
        $answer = Invoke-CimMethod -Namespace root/default -ClassName SystemRestore -MethodName GetLastRestoreStatus
        $Ansible.Result = @{
            status = [int]$answer.ReturnValue
            meaning = @{ 0 = 'failed'; 1 = 'succeeded'; 2 = 'interrupted' }[[int]$answer.ReturnValue]
        }
    }
    'remove' {
        if (-not (Get-Point $SequenceNumber)) {
            $Ansible.Result = @{ removed = $false; message = "restore point #$SequenceNumber is no longer there (removed by Windows)" }
            return
        }
        Add-Type -Namespace ClinicalUpgrade -Name SystemRestore -MemberDefinition @'
[DllImport("srclient.dll")]
public static extern int SRRemoveRestorePoint(int index);
'@
        $code = [ClinicalUpgrade.SystemRestore]::SRRemoveRestorePoint($SequenceNumber)
        if ($code -ne 0) {
            $Ansible.Failed = $true
            $Ansible.Result = @{ removed = $false; message = "SRRemoveRestorePoint($SequenceNumber) returned $code; the point is kept" }
            return
        }
        $Ansible.Changed = $true
        $Ansible.Result = @{ removed = $true; sequence_number = $SequenceNumber }
    }
}
