// A user-assigned identity of the Function App. main.bicep creates two, so that neither holds
// the other's rights:
//   host   the Functions host: its blob containers, the deployment package, telemetry
//   mde    the app: MDE tokens, the request, result and ledger stores, the ticket-system secrets
// rbac.bicep grants each one its roles; mde-permissions.bicep and the grant script target mde.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
