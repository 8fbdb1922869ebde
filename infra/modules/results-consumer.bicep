// Optional example: a results consumer (Consumption Logic App) that reads machine-action-results
// and comments on the Microsoft Sentinel incident each result belongs to.
//   every minute   get up to 32 result messages (invisible for 5 minutes while it works on them)
//   per message    if source.system is "sentinel" and source.id is exactly a Sentinel incident's
//                  ARM id (checked below, before it becomes a URL): PUT a comment on that
//                  incident, named by the result's resultId, so a redelivered message rewrites
//                  the same comment instead of adding a second one; a LeaseExpired reminder
//                  says how long the device has been isolated and how to release it
//                  then delete the message; after 5 failed deliveries delete it anyway (the
//                  failure stays visible in the run history)
// It deletes every message it reads, so it must be the only reader of the queue: add a case for
// ticket results to its Switch (docs/producers.md, "Results consumers") rather than a second reader.
// Roles: Storage Queue Data Reader + Message Processor on machine-action-results only (here), and
// Microsoft Sentinel Responder on the Sentinel workspace (granted where the workspace lives, see
// docs/producers.md: it is usually another resource group). Queue calls use the HTTP action with
// the identity's token for the same reason as the producers: shared keys are disabled. Its runs
// (WorkflowRuntime) go to Log Analytics.

@description('Name of the results consumer Logic App.')
param workflowName string

@description('Azure region.')
param location string

@description('Tags for the Logic App.')
param tags object

@description('Storage account holding the queue.')
param storageAccountName string

@description('The results queue.')
param queueName string

@description('Resource id of the Log Analytics workspace that receives the run history.')
param logAnalyticsWorkspaceId string

@description('Minutes between two polls of the queue.')
@minValue(1)
@maxValue(60)
param pollingIntervalMinutes int = 1

var roles = {
  queueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
  queueDataMessageProcessor: '8a0f0c08-91a1-4084-bc3d-661d67233fed'
}

// Sentinel incident comments API (stable).
var securityInsightsApiVersion = '2024-03-01'

// source.id becomes the path of an ARM call made with this app's token, so it must be exactly
// /subscriptions/<guid>/resourceGroups/<name>/providers/Microsoft.OperationalInsights/workspaces/
// <name>/providers/Microsoft.SecurityInsights/Incidents/<name> (case-insensitive): only these
// characters (lower-cased), no '..', and the resultId naming the comment a GUID too. Logic Apps
// has no regular expressions: each character is checked with a Filter array over its positions.
var armIdCharacters = 'abcdefghijklmnopqrstuvwxyz0123456789-_.()/'
var hexCharacters = '0123456789abcdef-'
var guidPad = 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz' // 36 non-hex characters: a short GUID cannot pass

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

var storageAuth = {
  type: 'ManagedServiceIdentity'
  audience: 'https://storage.azure.com/'
}

var storageHeaders = {
  'x-ms-version': '2021-12-02'
}

resource consumer 'Microsoft.Logic/workflows@2019-05-01' = {
  name: workflowName
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
      parameters: {
        queueMessagesUrl: {
          type: 'String'
        }
        armEndpoint: {
          type: 'String'
        }
      }
      triggers: {
        Poll: {
          type: 'Recurrence'
          recurrence: {
            frequency: 'Minute'
            interval: pollingIntervalMinutes
          }
          // One run at a time: a slow run never overlaps the next poll.
          runtimeConfiguration: {
            concurrency: {
              runs: 1
            }
          }
        }
      }
      actions: {
        Get_results: {
          type: 'Http'
          runAfter: {}
          inputs: {
            method: 'GET'
            uri: '@{parameters(\'queueMessagesUrl\')}?numofmessages=32&visibilitytimeout=300'
            headers: storageHeaders
            authentication: storageAuth
          }
        }
        For_each_result: {
          type: 'Foreach'
          foreach: '@xpath(xml(body(\'Get_results\')), \'/QueueMessagesList/QueueMessage\')'
          runAfter: {
            Get_results: [
              'Succeeded'
            ]
          }
          // In order: a request's first result is handled before its final one.
          runtimeConfiguration: {
            concurrency: {
              repetitions: 1
            }
          }
          actions: {
            Result: {
              type: 'Compose'
              runAfter: {}
              inputs: '@json(xpath(xml(item()), \'string(/QueueMessage/MessageText)\'))'
            }
            By_source: {
              type: 'Switch'
              runAfter: {
                Result: [
                  'Succeeded'
                ]
              }
              expression: '@{toLower(coalesce(outputs(\'Result\')?[\'source\']?[\'system\'], \'\'))}'
              cases: {
                Sentinel: {
                  case: 'sentinel'
                  actions: {
                    Incident_id: {
                      type: 'Compose'
                      runAfter: {}
                      inputs: '@{coalesce(outputs(\'Result\')?[\'source\']?[\'id\'], \'\')}'
                    }
                    Has_incident_path: {
                      type: 'If'
                      runAfter: {
                        Incident_id: [
                          'Succeeded'
                        ]
                      }
                      expression: {
                        and: [
                          {
                            startsWith: [
                              '@toLower(outputs(\'Incident_id\'))'
                              '/subscriptions/'
                            ]
                          }
                          {
                            equals: [
                              '@length(split(outputs(\'Incident_id\'), \'/\'))'
                              13
                            ]
                          }
                        ]
                      }
                      actions: {
                        Id_segments: {
                          type: 'Compose'
                          runAfter: {}
                          inputs: '@split(toLower(outputs(\'Incident_id\')), \'/\')'
                        }
                        Guids: {
                          type: 'Compose'
                          runAfter: {
                            Id_segments: [
                              'Succeeded'
                            ]
                          }
                          // The subscription id and the resultId, each cut or padded to 36 characters.
                          inputs: '@concat(substring(concat(outputs(\'Id_segments\')[2], \'${guidPad}\'), 0, 36), substring(concat(toLower(string(coalesce(outputs(\'Result\')?[\'resultId\'], \'\'))), \'${guidPad}\'), 0, 36))'
                        }
                        Characters_outside_arm_ids: {
                          type: 'Query'
                          runAfter: {}
                          inputs: {
                            from: '@range(0, length(outputs(\'Incident_id\')))'
                            where: '@not(contains(\'${armIdCharacters}\', substring(toLower(outputs(\'Incident_id\')), item(), 1)))'
                          }
                        }
                        Characters_outside_guids: {
                          type: 'Query'
                          runAfter: {
                            Guids: [
                              'Succeeded'
                            ]
                          }
                          // A hex digit everywhere but positions 8, 13, 18 and 23, which hold '-'.
                          inputs: {
                            from: '@range(0, 72)'
                            where: '@or(not(contains(\'${hexCharacters}\', substring(outputs(\'Guids\'), item(), 1))), not(equals(contains(createArray(8, 13, 18, 23), mod(item(), 36)), equals(substring(outputs(\'Guids\'), item(), 1), \'-\'))))'
                          }
                        }
                        Is_incident: {
                          type: 'If'
                          runAfter: {
                            Characters_outside_arm_ids: [
                              'Succeeded'
                            ]
                            Characters_outside_guids: [
                              'Succeeded'
                            ]
                          }
                          expression: {
                            and: [
                              {
                                equals: [
                                  '@length(body(\'Characters_outside_arm_ids\'))'
                                  0
                                ]
                              }
                              {
                                equals: [
                                  '@length(body(\'Characters_outside_guids\'))'
                                  0
                                ]
                              }
                              {
                                not: {
                                  contains: [
                                    '@outputs(\'Incident_id\')'
                                    '..'
                                  ]
                                }
                              }
                              {
                                equals: [
                                  '@length(outputs(\'Id_segments\')[2])'
                                  36
                                ]
                              }
                              {
                                equals: [
                                  '@length(string(coalesce(outputs(\'Result\')?[\'resultId\'], \'\')))'
                                  36
                                ]
                              }
                              {
                                equals: [
                                  '@join(createArray(outputs(\'Id_segments\')[3], outputs(\'Id_segments\')[5], outputs(\'Id_segments\')[6], outputs(\'Id_segments\')[7], outputs(\'Id_segments\')[9], outputs(\'Id_segments\')[10], outputs(\'Id_segments\')[11]), \'/\')'
                                  'resourcegroups/providers/microsoft.operationalinsights/workspaces/providers/microsoft.securityinsights/incidents'
                                ]
                              }
                              {
                                not: {
                                  contains: [
                                    '@createArray(outputs(\'Id_segments\')[4], outputs(\'Id_segments\')[8], outputs(\'Id_segments\')[12])'
                                    ''
                                  ]
                                }
                              }
                              {
                                not: {
                                  endsWith: [
                                    '@outputs(\'Id_segments\')[4]'
                                    '.'
                                  ]
                                }
                              }
                              {
                                not: {
                                  endsWith: [
                                    '@outputs(\'Id_segments\')[8]'
                                    '.'
                                  ]
                                }
                              }
                              {
                                not: {
                                  endsWith: [
                                    '@outputs(\'Id_segments\')[12]'
                                    '.'
                                  ]
                                }
                              }
                            ]
                          }
                          actions: {
                            Comment_on_incident: {
                              type: 'Http'
                              runAfter: {}
                              inputs: {
                                method: 'PUT'
                                uri: '@{parameters(\'armEndpoint\')}@{substring(outputs(\'Incident_id\'), 1)}/comments/@{outputs(\'Result\')?[\'resultId\']}?api-version=${securityInsightsApiVersion}'
                                headers: {
                                  'Content-Type': 'application/json'
                                }
                                body: {
                                  properties: {
                                    message: 'MDE containment: @{outputs(\'Result\')?[\'action\']} @{outputs(\'Result\')?[\'outcome\']} on @{coalesce(outputs(\'Result\')?[\'machine\']?[\'computerDnsName\'], outputs(\'Result\')?[\'machine\']?[\'id\'], \'an unresolved device\')}. MDE action @{coalesce(outputs(\'Result\')?[\'machineAction\']?[\'id\'], \'none\')} (@{coalesce(outputs(\'Result\')?[\'machineAction\']?[\'status\'], \'no status\')}). @{if(equals(outputs(\'Result\')?[\'outcome\'], \'LeaseExpired\'), concat(\'The device is still isolated by this service after \', string(outputs(\'Result\')?[\'isolatedHours\']), \' h (lease period \', string(outputs(\'Result\')?[\'leasePeriod\']), \'): release it through an approved release ticket once it is clean. \'), \'\')}@{coalesce(outputs(\'Result\')?[\'error\']?[\'code\'], \'\')} @{coalesce(outputs(\'Result\')?[\'error\']?[\'message\'], \'\')} Request @{outputs(\'Result\')?[\'requestId\']}, result @{outputs(\'Result\')?[\'sequence\']}.'
                                  }
                                }
                                authentication: {
                                  type: 'ManagedServiceIdentity'
                                  audience: '@parameters(\'armEndpoint\')'
                                }
                              }
                            }
                          }
                          else: {
                            actions: {}
                          }
                        }
                      }
                      else: {
                        actions: {}
                      }
                    }
                  }
                }
              }
              default: {
                actions: {}
              }
            }
            Done_or_given_up: {
              type: 'If'
              runAfter: {
                By_source: [
                  'Succeeded'
                  'Failed'
                  'TimedOut'
                  'Skipped'
                ]
              }
              expression: {
                or: [
                  {
                    equals: [
                      '@actions(\'By_source\')?[\'status\']'
                      'Succeeded'
                    ]
                  }
                  {
                    greaterOrEquals: [
                      '@int(xpath(xml(item()), \'string(/QueueMessage/DequeueCount)\'))'
                      5
                    ]
                  }
                ]
              }
              actions: {
                Delete_message: {
                  type: 'Http'
                  runAfter: {}
                  inputs: {
                    method: 'DELETE'
                    uri: '@{parameters(\'queueMessagesUrl\')}/@{xpath(xml(item()), \'string(/QueueMessage/MessageId)\')}?popreceipt=@{encodeUriComponent(xpath(xml(item()), \'string(/QueueMessage/PopReceipt)\'))}'
                    headers: storageHeaders
                    authentication: storageAuth
                  }
                }
              }
              else: {
                actions: {}
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
      armEndpoint: {
        value: environment().resourceManager
      }
    }
  }
}

resource consumerReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, consumer.id, roles.queueDataReader)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataReader)
    principalId: consumer.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource consumerProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, consumer.id, roles.queueDataMessageProcessor)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataMessageProcessor)
    principalId: consumer.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource consumerRuns 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: consumer
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

output workflowName string = consumer.name
output workflowId string = consumer.id
output principalId string = consumer.identity.principalId
