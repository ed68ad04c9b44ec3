# Copyright: clinical-upgrade contributors
# Apache License 2.0
#
# workstation_windows discover: read the workstation, change nothing. Run by
# ansible.windows.win_powershell (Windows PowerShell 5.1); the result goes to $Ansible.Result and is
# judged on the controller by the filter workstation_windows_discovery.
[CmdletBinding()]
param (
    # The MSI ProductCodes of the viewer's catalogued versions, looked up in the uninstall keys.
    [string[]]$ProductIds = @()
)

$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false

$os = Get-CimInstance -ClassName Win32_OperatingSystem
$currentVersion = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
$systemDrive = $env:SystemDrive
$disk = Get-CimInstance -ClassName Win32_LogicalDisk -Filter "DeviceID='$systemDrive'"

$adapters = @(Get-CimInstance -ClassName Win32_VideoController | ForEach-Object {
        @{
            name = [string]$_.Name
            pnp_device_id = [string]$_.PNPDeviceID
            driver_version = [string]$_.DriverVersion
            driver_date = if ($_.DriverDate) { $_.DriverDate.ToString('yyyy-MM-dd') } else { '' }
            inf_filename = [string]$_.InfFilename
            installed_display_drivers = [string]$_.InstalledDisplayDrivers
            config_manager_error_code = [int]$_.ConfigManagerErrorCode
        }
    })

# The viewer: the uninstall key of each catalogued ProductCode, 64-bit and 32-bit view.
$uninstallRoots = @(
    'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall',
    'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall'
)
$viewer = @(foreach ($productId in $ProductIds) {
        foreach ($root in $uninstallRoots) {
            $key = Join-Path -Path $root -ChildPath $productId
            if (Test-Path -LiteralPath $key) {
                $entry = Get-ItemProperty -LiteralPath $key
                @{
                    product_id = $productId
                    key = $key
                    display_name = [string]$entry.DisplayName
                    display_version = [string]$entry.DisplayVersion
                }
            }
        }
    })

# A restart Windows is waiting for (servicing, or Windows Update).
$rebootPending = (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') -or
(Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired')

# System Restore (client Windows only): on for a drive when RPSessionInterval is 1, off by policy
# when DisableSR is 1.
$restoreKey = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SystemRestore' -ErrorAction SilentlyContinue
$restorePolicy = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\SystemRestore' -ErrorAction SilentlyContinue

$Ansible.Result = @{
    os = @{
        caption = [string]$os.Caption
        version = [string]$os.Version
        build = [int]$os.BuildNumber
        ubr = [int]$currentVersion.UBR
        display_version = [string]$currentVersion.DisplayVersion
        product_type = [int]$os.ProductType
        architecture = [string]$os.OSArchitecture
        last_boot = $os.LastBootUpTime.ToUniversalTime().ToString('o')
    }
    memory = @{
        total_mb = [int64][math]::Floor($os.TotalVisibleMemorySize / 1024)
        free_mb = [int64][math]::Floor($os.FreePhysicalMemory / 1024)
    }
    disk = @{
        drive = $systemDrive
        size_mb = [int64][math]::Floor($disk.Size / 1MB)
        free_mb = [int64][math]::Floor($disk.FreeSpace / 1MB)
    }
    adapters = $adapters
    viewer = $viewer
    reboot_pending = [bool]$rebootPending
    system_restore = @{
        available = [bool](Get-Command -Name Checkpoint-Computer -ErrorAction SilentlyContinue)
        enabled = ($null -ne $restoreKey -and $restoreKey.RPSessionInterval -eq 1)
        disabled_by_policy = ($null -ne $restorePolicy -and $restorePolicy.DisableSR -eq 1)
    }
}
