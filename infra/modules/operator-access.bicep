// Optional: lets one operator (you, or a SIEM/ticketing connector's identity) post requests and
// read results. Shared keys are disabled, so `az storage message put --auth-mode login` needs a
// data role. Only the request queues can be written and only the results queue read.

@description('Object id of the user, group or service principal that posts requests and reads results.')
param principalId string

@description('Kind of principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Storage account holding the queues.')
param storageAccountName string

@description('Queues the operator may post requests to.')
param requestQueueNames array

@description('Queue the operator may read results from.')
param resultsQueueName string

var roles = {
  queueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  queueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource requestQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queueName in requestQueueNames: {
    parent: queueService
    name: queueName
  }
]

resource resultsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: resultsQueueName
}

resource requestSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in requestQueueNames: {
    name: guid(requestQueues[i].id, principalId, roles.queueDataMessageSender)
    scope: requestQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataMessageSender)
      principalId: principalId
      principalType: principalType
    }
  }
]

resource resultsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resultsQueue.id, principalId, roles.queueDataReader)
  scope: resultsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataReader)
    principalId: principalId
    principalType: principalType
  }
}
