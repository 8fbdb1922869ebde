// Optional: an HTTP intake in front of the release-requests queue, for ticketing systems (Jira,
// ServiceNow) that cannot get an Entra token in a webhook. A Consumption Logic App with a Request
// trigger takes a POSTed JSON body and puts it, unchanged, onto the queue with its own identity.
//   the secret     the trigger's callback URL carries a SAS signature (sig=...): whoever holds the
//                  URL can post. It is written to a Key Vault secret (never an output) and rotated
//                  by regenerating the workflow's access key and deploying again (docs/producers.md).
//   the identity   system-assigned; Storage Queue Data Message Sender on release-requests only
//   the vault      RBAC authorization (no access policies), soft delete + purge protection,
//                  firewall on: only the allowed IP ranges reach secrets over the network. The
//                  deployment writes the secret through Azure Resource Manager, which the
//                  firewall does not block. createMode 'recover' brings back the vault that
//                  `azd down` soft-deleted (the preprovision hook sets it).
//   the logs       the runs (WorkflowRuntime) and the vault's audit log go to Log Analytics.
//                  The posted body proves nothing by itself: the app checks every release with
//                  the ticket system. The caller IP list still keeps noise out.
// The queue write is the same HTTP call as in sentinel-playbook.bicep, for the same reason: the
// account denies shared keys, so the Azure Queues connector's key-based connection cannot work.

@description('Name of the intake Logic App.')
param workflowName string

@description('Name of the Key Vault holding the callback URL (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Azure region.')
param location string

@description('Tags for the Logic App and the vault.')
param tags object

@description('Storage account holding the queue.')
param storageAccountName string

@description('The one queue the intake may write to.')
param queueName string

@description('IP ranges (CIDR) allowed to call the trigger, e.g. your Jira or ServiceNow egress ranges. Empty: any caller that has the URL.')
param allowedCallerIpRanges array = []

@description('IP ranges (CIDR) allowed to read the secret from the vault over the network. Empty: nobody, until you add your address.')
param keyVaultAllowedIpRanges array = []

@description('Optional object id of the principal that reads the callback URL to configure Jira or ServiceNow (Key Vault Secrets User on that one secret).')
param urlReaderPrincipalId string = ''

@description('Kind of the secret reader principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param urlReaderPrincipalType string = 'User'

@description('default: create or update the vault. recover: bring back the soft-deleted vault of the same name (set by the preprovision hook).')
@allowed([
  'default'
  'recover'
])
param keyVaultCreateMode string = 'default'

@description('Resource id of the Log Analytics workspace that receives the run history and the vault\'s audit log.')
param logAnalyticsWorkspaceId string

@description('When the stored URL should be rotated: the secret\'s expiry date (informational: Key Vault still returns it). Default: 180 days after this deployment.')
param callbackUrlExpiry string = dateTimeAdd(utcNow(), 'P180D')

var roles = {
  queueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

var triggerName = 'manual'
var secretName = 'ticket-intake-url'
var callerRanges = [for range in allowedCallerIpRanges: {
  addressRange: range
}]
var vaultIpRules = [for range in keyVaultAllowedIpRanges: {
  value: range
}]

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

resource intake 'Microsoft.Logic/workflows@2019-05-01' = {
  name: workflowName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    // An empty allowedCallerIpAddresses list would admit only other Logic Apps: leave the block
    // out entirely when no range is given.
    accessControl: empty(allowedCallerIpRanges) ? {} : {
      triggers: {
        allowedCallerIpAddresses: callerRanges
      }
    }
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: {
        queueMessagesUrl: {
          type: 'String'
        }
      }
      triggers: {
        // POST only; no schema: the body is forwarded as it came, the function maps it.
        manual: {
          type: 'Request'
          kind: 'Http'
          inputs: {
            method: 'POST'
          }
        }
      }
      actions: {
        // A body that is not JSON would reach the queue as Logic Apps' {"$content": base64}
        // wrapper: refuse it here, where the caller sees the answer.
        Is_JSON: {
          type: 'If'
          runAfter: {}
          expression: {
            and: [
              {
                contains: [
                  '@toLower(coalesce(triggerOutputs()?[\'headers\']?[\'Content-Type\'], \'\'))'
                  'application/json'
                ]
              }
            ]
          }
          actions: {
            Put_message_on_release_requests: {
              type: 'Http'
              runAfter: {}
              inputs: {
                method: 'POST'
                uri: '@parameters(\'queueMessagesUrl\')'
                headers: {
                  'x-ms-version': '2021-12-02'
                  'Content-Type': 'application/xml; charset=utf-8'
                }
                body: '<QueueMessage><MessageText>@{replace(replace(replace(string(triggerBody()), \'&\', \'&amp;\'), \'<\', \'&lt;\'), \'>\', \'&gt;\')}</MessageText></QueueMessage>'
                authentication: {
                  type: 'ManagedServiceIdentity'
                  audience: 'https://storage.azure.com/'
                }
              }
            }
            Queued: {
              type: 'Response'
              kind: 'Http'
              runAfter: {
                Put_message_on_release_requests: [
                  'Succeeded'
                ]
              }
              inputs: {
                statusCode: 202
                headers: {
                  'Content-Type': 'application/json'
                }
                body: {
                  queue: queueName
                  messageId: '@{xpath(xml(body(\'Put_message_on_release_requests\')), \'string(/QueueMessagesList/QueueMessage/MessageId)\')}'
                }
              }
            }
            Not_queued: {
              type: 'Response'
              kind: 'Http'
              runAfter: {
                Put_message_on_release_requests: [
                  'Failed'
                  'TimedOut'
                ]
              }
              inputs: {
                statusCode: 502
                headers: {
                  'Content-Type': 'application/json'
                }
                body: {
                  error: 'the request could not be queued: send it again'
                  queueStatus: '@outputs(\'Put_message_on_release_requests\')?[\'statusCode\']'
                }
              }
            }
          }
          else: {
            actions: {
              Not_JSON: {
                type: 'Response'
                kind: 'Http'
                runAfter: {}
                inputs: {
                  statusCode: 415
                  headers: {
                    'Content-Type': 'application/json'
                  }
                  body: {
                    error: 'send the ticket as JSON (Content-Type: application/json)'
                  }
                }
              }
            }
          }
        }
      }
      outputs: {}
    }
    parameters: {
      queueMessagesUrl: {
        value: '${storage.properties.primaryEndpoints.queue}${queueName}/messages'
      }
    }
  }
}

resource intakeTrigger 'Microsoft.Logic/workflows/triggers@2019-05-01' existing = {
  parent: intake
  name: triggerName
}

resource intakeSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, intake.id, roles.queueDataMessageSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataMessageSender)
    principalId: intake.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: union(tags, {
    'mde-vault-role': 'ticket-intake'
  })
  properties: {
    createMode: keyVaultCreateMode
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
      defaultAction: 'Deny'
      bypass: 'None'
      ipRules: vaultIpRules
      virtualNetworkRules: []
    }
  }
}

// The full URL, signature included, as the trigger has it at deployment time: after the access
// key is regenerated, the next deployment stores the new URL as a new version.
resource callbackUrl 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: intakeTrigger.listCallbackUrl().value
    contentType: 'text/uri-list'
    attributes: {
      enabled: true
      exp: dateTimeToEpoch(callbackUrlExpiry)
    }
  }
  dependsOn: [
    intake
  ]
}

resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(urlReaderPrincipalId)) {
  name: guid(callbackUrl.id, urlReaderPrincipalId, roles.keyVaultSecretsUser)
  scope: callbackUrl
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: urlReaderPrincipalId
    principalType: urlReaderPrincipalType
  }
}

resource intakeRuns 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: intake
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

output workflowName string = intake.name
output workflowId string = intake.id
output principalId string = intake.identity.principalId
output keyVaultName string = vault.name
output secretName string = callbackUrl.name
