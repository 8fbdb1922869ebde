// Optional: two Microsoft Sentinel playbooks (Consumption Logic Apps) that put what Sentinel hands
// them onto the isolation-requests queue. The function parses Sentinel's shapes itself.
//   incident playbook   trigger "Microsoft Sentinel incident": an automation rule runs it when an
//                       incident is created (docs/producers.md says which rule). It forwards only
//                       what isolation needs, in the trigger body's own shape: the incident's id,
//                       name, number, title, severity, URL and its Host entities, each cut to the
//                       names the function reads. The whole body of an incident with many alerts
//                       and entities exceeds the 64 KiB a queue message may hold.
//   alert playbook      trigger "Microsoft Sentinel alert": an automation rule on alert creation or
//                       an analytics rule's automated response runs it; it forwards the alert
//                       as it came
// Each playbook runs as its own system-assigned identity, which gets Storage Queue Data Message
// Sender on the isolation-requests queue and nothing else: it can add messages to that one queue,
// not read, delete or touch anything else. Neither playbook calls Sentinel, so neither identity
// has a Sentinel role.
//
// The message is written with the built-in HTTP action and the identity's Entra token (audience
// https://storage.azure.com/), not with the Azure Queues managed connector: the account denies
// shared keys, and the connector documents connections by account key or by a signed-in user's
// Entra ID, not by the playbook's own identity. The Queue service's Put Message call wants the text inside
// <QueueMessage><MessageText>; escaping &, < and > is all XML needs there (the JSON text has no
// raw control characters), and the queue stores the unescaped text: the message is JSON, as plain
// text, which the function reads without base64. Both playbooks' runs go to Log Analytics.

@description('Name of the incident playbook (Logic App).')
param incidentPlaybookName string

@description('Name of the alert playbook (Logic App).')
param alertPlaybookName string

@description('Name of the Microsoft Sentinel API connection both playbooks share (managed identity auth).')
param sentinelConnectionName string

@description('Azure region.')
param location string

@description('Tags for the playbooks and the connection.')
param tags object

@description('Storage account holding the queue.')
param storageAccountName string

@description('The one queue the playbooks may write to.')
param queueName string

@description('Resource id of the Log Analytics workspace that receives the playbooks\' run history.')
param logAnalyticsWorkspaceId string

@description('Object id of Microsoft Sentinel\'s service principal ("Azure Security Insights", appId 98785600-1bb7-4fb9-b9fa-19afe2c8a360) in this tenant. Set it to let automation rules run these playbooks (Microsoft Sentinel Automation Contributor on this resource group). Empty: grant it in Sentinel (Settings, Playbook permissions) instead.')
param sentinelAutomationPrincipalId string = ''

var roles = {
  queueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  sentinelAutomationContributor: 'f4c81013-99ee-4d62-a7ee-b3f1f648599a'
}

var sentinelApiId = subscriptionResourceId('Microsoft.Web/locations/managedApis', location, 'azuresentinel')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: queueName
}

// Managed-identity connection ('Alternative' parameter values): no user signs it in and it holds
// no secret; each workflow authenticates with its own identity (connectionProperties below).
resource sentinelConnection 'Microsoft.Web/connections@2016-06-01' = {
  name: sentinelConnectionName
  location: location
  tags: tags
  kind: 'V1'
  properties: {
    displayName: sentinelConnectionName
    api: {
      id: sentinelApiId
    }
    parameterValueType: 'Alternative'
  }
}

var connections = {
  azuresentinel: {
    connectionId: sentinelConnection.id
    connectionName: sentinelConnection.name
    id: sentinelApiId
    connectionProperties: {
      authentication: {
        type: 'ManagedServiceIdentity'
      }
    }
  }
}

var workflowParameters = {
  '$connections': {
    type: 'Object'
    defaultValue: {}
  }
  queueMessagesUrl: {
    type: 'String'
  }
}

var workflowParameterValues = {
  '$connections': {
    value: connections
  }
  queueMessagesUrl: {
    value: '${storage.properties.primaryEndpoints.queue}${queueName}/messages'
  }
}

var sentinelConnectionReference = {
  name: '@parameters(\'$connections\')[\'azuresentinel\'][\'connectionId\']'
}

var putMessageInputs = {
  method: 'POST'
  uri: '@parameters(\'queueMessagesUrl\')'
  headers: {
    'x-ms-version': '2021-12-02'
    'Content-Type': 'application/xml; charset=utf-8'
  }
  authentication: {
    type: 'ManagedServiceIdentity'
    audience: 'https://storage.azure.com/'
  }
}

// The alert trigger's body, unchanged, as the text of one message (Queue service Put Message).
var putMessage = {
  type: 'Http'
  runAfter: {}
  inputs: union(putMessageInputs, {
    body: '<QueueMessage><MessageText>@{replace(replace(replace(string(triggerBody()), \'&\', \'&amp;\'), \'<\', \'&lt;\'), \'>\', \'&gt;\')}</MessageText></QueueMessage>'
  })
}

// The incident, cut to what isolation needs. Sentinel's relatedEntities, Host kind only, each
// cut to the names the function reads (the MDE device id first, then the DNS names).
var incidentActions = {
  Host_entities: {
    type: 'Query'
    runAfter: {}
    inputs: {
      from: '@coalesce(triggerBody()?[\'object\']?[\'properties\']?[\'relatedEntities\'], createArray())'
      where: '@equals(toLower(string(item()?[\'kind\'])), \'host\')'
    }
  }
  Hosts: {
    type: 'Select'
    runAfter: {
      Host_entities: [
        'Succeeded'
      ]
    }
    inputs: {
      from: '@body(\'Host_entities\')'
      select: {
        kind: '@item()?[\'kind\']'
        properties: {
          hostName: '@item()?[\'properties\']?[\'hostName\']'
          dnsDomain: '@item()?[\'properties\']?[\'dnsDomain\']'
          additionalData: {
            MdatpDeviceId: '@item()?[\'properties\']?[\'additionalData\']?[\'MdatpDeviceId\']'
            DeviceDnsName: '@item()?[\'properties\']?[\'additionalData\']?[\'DeviceDnsName\']'
          }
        }
      }
    }
  }
  Incident_for_isolation: {
    type: 'Compose'
    runAfter: {
      Hosts: [
        'Succeeded'
      ]
    }
    inputs: {
      object: {
        id: '@triggerBody()?[\'object\']?[\'id\']'
        name: '@triggerBody()?[\'object\']?[\'name\']'
        properties: {
          incidentNumber: '@triggerBody()?[\'object\']?[\'properties\']?[\'incidentNumber\']'
          title: '@triggerBody()?[\'object\']?[\'properties\']?[\'title\']'
          severity: '@triggerBody()?[\'object\']?[\'properties\']?[\'severity\']'
          incidentUrl: '@triggerBody()?[\'object\']?[\'properties\']?[\'incidentUrl\']'
          relatedEntities: '@body(\'Hosts\')'
        }
      }
    }
  }
  Put_message_on_isolation_requests: {
    type: 'Http'
    runAfter: {
      Incident_for_isolation: [
        'Succeeded'
      ]
    }
    inputs: union(putMessageInputs, {
      body: '<QueueMessage><MessageText>@{replace(replace(replace(string(outputs(\'Incident_for_isolation\')), \'&\', \'&amp;\'), \'<\', \'&lt;\'), \'>\', \'&gt;\')}</MessageText></QueueMessage>'
    })
  }
}

resource incidentPlaybook 'Microsoft.Logic/workflows@2019-05-01' = {
  name: incidentPlaybookName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: workflowParameters
      triggers: {
        Microsoft_Sentinel_incident: {
          type: 'ApiConnectionWebhook'
          inputs: {
            // Logic Apps expression: the trigger's own callback URL, handed to Sentinel.
            body: {
              callback_url: '@{listCallbackUrl()}'
            }
            host: {
              connection: sentinelConnectionReference
            }
            path: '/incident-creation'
          }
        }
      }
      actions: incidentActions
      outputs: {}
    }
    parameters: workflowParameterValues
  }
}

resource alertPlaybook 'Microsoft.Logic/workflows@2019-05-01' = {
  name: alertPlaybookName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: workflowParameters
      triggers: {
        Microsoft_Sentinel_alert: {
          type: 'ApiConnectionWebhook'
          inputs: {
            // Logic Apps expression: the trigger's own callback URL, handed to Sentinel.
            body: {
              callback_url: '@{listCallbackUrl()}'
            }
            host: {
              connection: sentinelConnectionReference
            }
            path: '/subscribe'
          }
        }
      }
      actions: {
        Put_message_on_isolation_requests: putMessage
      }
      outputs: {}
    }
    parameters: workflowParameterValues
  }
}

// The role names the workflow (known before deployment), not its principal id (known after).
resource incidentPlaybookSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, incidentPlaybook.id, roles.queueDataMessageSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataMessageSender)
    principalId: incidentPlaybook.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource alertPlaybookSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, alertPlaybook.id, roles.queueDataMessageSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataMessageSender)
    principalId: alertPlaybook.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// What Sentinel's "Playbook permissions" setting grants: its service account may read the
// playbooks' triggers and get their callback URLs, so automation rules can run them. Sentinel
// checks for it on the resource group. It covers every Logic App in the group (the ticket
// intake's URL included): deploy the playbooks to a resource group of their own if that matters.
resource sentinelRunsPlaybooks 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(sentinelAutomationPrincipalId)) {
  name: guid(resourceGroup().id, sentinelAutomationPrincipalId, roles.sentinelAutomationContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.sentinelAutomationContributor)
    principalId: sentinelAutomationPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource incidentPlaybookRuns 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: incidentPlaybook
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'WorkflowRuntime'
        enabled: true
      }
    ]
  }
}

resource alertPlaybookRuns 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: alertPlaybook
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'WorkflowRuntime'
        enabled: true
      }
    ]
  }
}

output incidentPlaybookName string = incidentPlaybook.name
output incidentPlaybookId string = incidentPlaybook.id
output incidentPlaybookPrincipalId string = incidentPlaybook.identity.principalId
output alertPlaybookName string = alertPlaybook.name
output alertPlaybookId string = alertPlaybook.id
output alertPlaybookPrincipalId string = alertPlaybook.identity.principalId
