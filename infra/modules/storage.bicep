// One storage account for the Functions host (blobs), the app's queues and the ledger table.
// Hardened: Entra ID only (no shared keys, so no connection string can work), no anonymous blob
// access, TLS 1.2, HTTPS only. Public network access stays on so the Flex Consumption app and the
// SOC's producers can reach it without a VNet; see docs/deploy.md "Hardening" for private endpoints.
// Every container the host uses exists from the start, so its blob roles can be scoped to them.
// Queue and table writes and deletes (who posted a request, what the app recorded) go to Log
// Analytics; reads only when asked for (every trigger poll is a read).

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for the account.')
param tags object

@description('Queues to create. The Functions host never creates them: the identity has no queue-create right.')
param queueNames array

@description('Table for the containment ledger.')
param ledgerTableName string

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob containers the Functions host keeps its leases and keys in (it cannot create them: its roles are scoped to each one).')
param hostContainerNames array

@description('Resource id of the Log Analytics workspace that receives the queue and table logs.')
param logAnalyticsWorkspaceId string

@description('Also log reads (StorageRead): every queue poll and ledger read. Off by default: noisy, and writes already show who posted what.')
param logStorageReads bool = false

@description('Replication: Standard_ZRS where the region has availability zones, else Standard_LRS. Empty: choose so.')
@allowed([
  ''
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = ''

// pickZones answers whether the region has availability zones (empty list: it has none).
var regionHasZones = !empty(pickZones('Microsoft.Compute', 'virtualMachines', location))
var effectiveSku = !empty(skuName) ? skuName : (regionHasZones ? 'Standard_ZRS' : 'Standard_LRS')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: effectiveSku
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in hostContainerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: ledgerTableName
}

var storageLogs = [
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
  {
    category: 'StorageRead'
    enabled: logStorageReads
  }
]

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogs
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogs
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
