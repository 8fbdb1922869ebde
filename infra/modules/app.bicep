// Flex Consumption plan (FC1) + Linux Function App, Python 3.11, running as two user-assigned
// identities: the host identity reads the deployment package and keeps the host's blobs; the MDE
// identity is the app's (queues, ledger, MDE tokens) and resolves the Key Vault references.
// Flex Consumption refuses a list of site properties and app settings that other plans take
// (ftpsState, alwaysOn, FUNCTIONS_WORKER_RUNTIME, WEBSITE_RUN_FROM_PACKAGE, ...): none is set
// here, and tests/infra checks the template against Microsoft's list.

@description('Function App name (also its default host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region (one that offers Flex Consumption).')
param location string

@description('Tags for the plan and the app.')
param tags object

@description('Resource id of the host identity: deployment package, AzureWebJobsStorage, telemetry.')
param hostIdentityId string

@description('Resource id of the MDE identity: the app\'s own (queues, ledger, MDE) and Key Vault references.')
param mdeIdentityId string

@description('URL of the blob container holding the deployment package.')
param deploymentContainerUrl string

@description('App settings (name -> value), complete: the deployment replaces whatever was set before.')
param appSettings object

// Why one: MDE's per-minute and per-hour call limits are the bottleneck, not compute. One
// instance drains an alert storm at the pace those limits allow, and the app spends its MDE
// budget per process: a second instance of a function only doubles the calls attempted and
// buys 429s. The limit applies per function group, and each queue-triggered function is its
// own group, so isolate_fn and release_fn each get one instance (docs/deploy.md has the figures).
@description('Ceiling on on-demand instances per function group (each queue-triggered function is its own group). See the comment above for why one.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 1

@description('Memory per instance. 2048 MB is plenty: the work is I/O-bound HTTP calls.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Resource id of the Log Analytics workspace that receives the app\'s logs (FunctionAppLogs).')
param logAnalyticsWorkspaceId string

@description('Python version of the Functions runtime.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${hostIdentityId}': {}
      '${mdeIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the MDE identity (the only one granted the secrets).
    keyVaultReferenceIdentity: mdeIdentityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: hostIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
  }
}

// No publishing passwords: deployments authenticate with Entra ID (azd, az CLI, Core Tools).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource appLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
