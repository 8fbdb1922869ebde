// The vault holding the ticket-system credentials the release path uses to verify every release
// against Jira / ServiceNow: the Jira API token (or Data Center personal access token) and the
// ServiceNow password. The app reads them as app settings holding Key Vault references, which the
// platform resolves with the MDE identity (the site's keyVaultReferenceIdentity).
//   the secrets    created and set by an operator (az keyvault secret set), never by this
//                  template: no value passes through a template, a parameter or an output, and a
//                  re-deployment cannot overwrite one. The template only refers to a secret that
//                  exists, once its ticket system is configured (the preprovision hook checks
//                  it exists first: a role assignment needs its scope to exist).
//   the roles      Key Vault Secrets User for the MDE identity on each configured secret, not on
//                  the vault; Key Vault Secrets Officer on the vault for the optional operator,
//                  who sets the values
//   the network    public endpoint, RBAC only: the platform resolves references from the app's
//                  outbound addresses, which are not fixed on Flex Consumption, so a firewall
//                  would need virtual network integration (docs/deploy.md, "Hardening options")
//   re-creation    soft delete + purge protection; createMode 'recover' brings back a vault
//                  soft-deleted by `azd down` (the hook sets it), secrets included
//   audit          every secret read and write (AuditEvent) goes to Log Analytics

@description('Name of the vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param vaultName string

@description('Azure region.')
param location string

@description('Tags for the vault.')
param tags object

@description('default: create or update. recover: bring back the soft-deleted vault of the same name (set by the preprovision hook).')
@allowed([
  'default'
  'recover'
])
param createMode string = 'default'

@description('Object (principal) id of the identity that resolves the references (the MDE identity).')
param readerPrincipalId string

@description('Jira is configured: grant the reader the Jira token secret (which must exist).')
param jiraConfigured bool

@description('ServiceNow is configured: grant the reader the ServiceNow password secret (which must exist).')
param serviceNowConfigured bool

@description('Name of the secret holding the Jira API token (or Data Center personal access token).')
param jiraTokenSecretName string

@description('Name of the secret holding the ServiceNow password.')
param serviceNowSecretName string

@description('Optional object id of the operator who sets the values (Key Vault Secrets Officer on this vault).')
param operatorPrincipalId string = ''

@description('Kind of the operator principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

@description('Resource id of the Log Analytics workspace that receives the vault\'s audit log.')
param logAnalyticsWorkspaceId string

var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: union(tags, {
    'mde-vault-role': 'ticket-credentials'
  })
  properties: {
    createMode: createMode
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    accessPolicies: []
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'None'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

// Existing secrets only: referenced by name, never written here.
resource jiraToken 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: jiraTokenSecretName
}

resource serviceNowCredential 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: serviceNowSecretName
}

resource jiraTokenReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (jiraConfigured) {
  name: guid(jiraToken.id, readerPrincipalId, roles.keyVaultSecretsUser)
  scope: jiraToken
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource serviceNowCredentialReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (serviceNowConfigured) {
  name: guid(serviceNowCredential.id, readerPrincipalId, roles.keyVaultSecretsUser)
  scope: serviceNowCredential
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorSetsSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
