// Optional: grants the app's managed identity the MDE application roles it needs, on the
// WindowsDefenderATP service principal, with the Microsoft Graph Bicep extension.
//   Machine.Isolate    isolate, unisolate, cancel
//   Machine.Read.All   resolve devices, read and list machine actions
// Whoever deploys this needs AppRoleAssignment.ReadWrite.All and Application.Read.All in Microsoft
// Graph (in practice a Privileged Role Administrator or Global Administrator). Deployers without
// them leave grantMdePermissions off and hand infra/scripts/grant-mde-permissions.sh to an admin.
// App-role ids are looked up by value on the service principal at deployment time: published ids
// differ between sources, the value is the contract.

extension microsoftGraphV1

@description('Object (principal) id of the managed identity to grant the MDE roles to.')
param principalId string

// WindowsDefenderATP, the first-party app behind the MDE API (same appId in every tenant).
var defenderAtpAppId = 'fc780465-2017-40d4-a0c5-307022471b92'

resource defenderAtp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: defenderAtpAppId
}

// One resource per role, each role id picked from the service principal's appRoles by its value.
resource machineIsolate 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: defenderAtp.id
  appRoleId: filter(defenderAtp.appRoles, role => role.value == 'Machine.Isolate')[0].id
}

resource machineReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: defenderAtp.id
  appRoleId: filter(defenderAtp.appRoles, role => role.value == 'Machine.Read.All')[0].id
}

output defenderAtpServicePrincipalId string = defenderAtp.id
