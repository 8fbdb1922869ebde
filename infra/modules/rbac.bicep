// Data-plane roles for the Function App's two identities, each at the narrowest scope that works.
// The host identity (the Functions host itself):
//   host containers   Storage Blob Data Owner on each container the host uses (leases, keys) and
//                     on the deployment container (the platform reads the package from it), not
//                     on the account: no other blob is reachable
//   App Insights      Monitoring Metrics Publisher: telemetry with Entra auth (local auth is off)
// The MDE identity (the app's code: MDE tokens, queues, ledger):
//   trigger queues    Storage Queue Data Reader + Message Processor (the queue trigger peeks,
//                     reads, deletes), and Message Sender (the pipeline re-enqueues fan-out,
//                     429 retries and tracking follow-ups on its own trigger queue)
//   results, poison   Storage Queue Data Message Sender (result messages; the host moves a
//                     message that failed maxDequeueCount times to <queue>-poison)
//   ledger table      Storage Table Data Contributor
// The ticket-system secrets are granted to the MDE identity in ticket-credentials.bicep, per secret.
// Built-in role definition ids are fixed by Azure and documented; names use guid() so a
// redeployment finds the same assignment instead of failing on a duplicate.

@description('Object (principal) id of the host identity (AzureWebJobsStorage, deployment, telemetry).')
param hostPrincipalId string

@description('Object (principal) id of the MDE identity (queues, ledger, MDE tokens).')
param mdePrincipalId string

@description('Storage account holding the queues, the ledger table and the host blobs.')
param storageAccountName string

@description('Blob containers the host identity owns: the host\'s own and the deployment container.')
param hostContainerNames array

@description('Queues that trigger a function.')
param triggerQueueNames array

@description('Queues the app or the host only writes to (results, poison queues).')
param sendOnlyQueueNames array

@description('Ledger table name.')
param ledgerTableName string

@description('Application Insights component name.')
param appInsightsName string

var roles = {
  queueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
  queueDataMessageProcessor: '8a0f0c08-91a1-4084-bc3d-661d67233fed'
  queueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var sendQueueNames = concat(triggerQueueNames, sendOnlyQueueNames)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for containerName in hostContainerNames: {
    parent: blobService
    name: containerName
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource triggerQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queueName in triggerQueueNames: {
    parent: queueService
    name: queueName
  }
]

resource sendQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queueName in sendQueueNames: {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: ledgerTableName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// --- the host identity ---------------------------------------------------------------------------

resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (containerName, i) in hostContainerNames: {
    name: guid(hostContainers[i].id, hostPrincipalId, roles.blobDataOwner)
    scope: hostContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
      principalId: hostPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource hostMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, hostPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- the MDE identity ----------------------------------------------------------------------------

resource triggerQueueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in triggerQueueNames: {
    name: guid(triggerQueues[i].id, mdePrincipalId, roles.queueDataReader)
    scope: triggerQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataReader)
      principalId: mdePrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource triggerQueueProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in triggerQueueNames: {
    name: guid(triggerQueues[i].id, mdePrincipalId, roles.queueDataMessageProcessor)
    scope: triggerQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataMessageProcessor)
      principalId: mdePrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in sendQueueNames: {
    name: guid(sendQueues[i].id, mdePrincipalId, roles.queueDataMessageSender)
    scope: sendQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataMessageSender)
      principalId: mdePrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource ledgerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(ledgerTable.id, mdePrincipalId, roles.tableDataContributor)
  scope: ledgerTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: mdePrincipalId
    principalType: 'ServicePrincipal'
  }
}
