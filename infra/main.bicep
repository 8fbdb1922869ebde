// mde-containment: queue-triggered Azure Functions that isolate and release devices through the
// Microsoft Defender for Endpoint API. Deploys into one resource group:
//   identity     the user-assigned identity the app runs as (storage, telemetry, MDE tokens)
//   storage      hardened account: request and result queues (+ poison queues), ledger table,
//                deployment container; Entra ID only
//   monitoring   Log Analytics + Application Insights, local auth disabled
//   rbac         the identity's data roles, each at the narrowest scope
//   app          Flex Consumption plan + Python 3.11 Function App with identity-based settings
//   mdePermissions (optional) the MDE app roles on the WindowsDefenderATP service principal
//   operatorAccess (optional) lets one operator post requests and peek at results
//   sentinelPlaybooks (optional) Sentinel incident and alert playbooks -> isolation-requests
//   ticketIntake (optional) HTTP intake for Jira / ServiceNow -> release-requests, URL in Key Vault
//   resultsConsumer (optional) example reader of machine-action-results that comments on incidents
// Each producer and the consumer runs as its own identity with one role on its one queue
// (docs/producers.md, "Security: identities and roles"); none of them can use the app's identity.
// No keys, connection strings or secrets anywhere: every connection is the managed identity.

@description('Environment name: part of every resource name (azd sets it from AZURE_ENV_NAME).')
@minLength(1)
@maxLength(40)
param environmentName string

@description('Azure region for every resource. It must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Tags added to every resource.')
param tags object = {}

@description('MDE cloud: picks the MDE API host and token audience (MDE_CLOUD).')
@allowed([
  'Commercial'
  'GCC'
  'GCCHigh'
  'DoD'
])
param mdeCloud string = 'Commercial'

@description('Optional MDE API base URL, e.g. a geo endpoint https://eu.api.security.microsoft.com. Empty: the cloud default.')
param mdeApiBaseUrl string = ''

@description('Optional MDE token scope. Empty: the cloud default.')
param mdeTokenScope string = ''

@description('Dry run: do everything except the MDE POST. On by default for every new deployment.')
param dryRun bool = true

@description('Isolation policy (ISOLATION_POLICY), as an object. Empty: the built-in policy.')
param isolationPolicy object = {}

@description('Ticket field mappings for release requests (TICKET_MAPPINGS), as an object. Empty: the built-in mappings.')
param ticketMappings object = {}

@description('Further app settings, e.g. tuning knobs or AzureFunctionsJobHost__ overrides. Applied last.')
param appSettingOverrides object = {}

@description('Ceiling on Flex Consumption on-demand instances per function group (see modules/app.bicep for why it is low).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Storage replication. Empty: Standard_ZRS where the region has availability zones, else Standard_LRS.')
@allowed([
  ''
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = ''

@description('Days to keep logs in Log Analytics.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 90

@description('Grant the identity Machine.Isolate and Machine.Read.All with the Microsoft Graph extension. Needs an admin deployer (AppRoleAssignment.ReadWrite.All); otherwise run scripts/grant-mde-permissions.sh.')
param grantMdePermissions bool = false

@description('Optional object id of an operator (user, group or service principal) allowed to post requests and peek at results.')
param operatorPrincipalId string = ''

@description('Kind of the operator principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

@description('Deploy the Microsoft Sentinel playbooks (incident and alert triggers) that put Sentinel\'s payload onto isolation-requests.')
param deploySentinelPlaybooks bool = false

@description('Object id of Microsoft Sentinel\'s service principal "Azure Security Insights" in this tenant: lets automation rules run the playbooks. Empty: grant it in Sentinel (Settings, Playbook permissions).')
param sentinelAutomationPrincipalId string = ''

@description('Deploy the HTTP intake (Logic App + Key Vault) that puts Jira / ServiceNow webhook bodies onto release-requests.')
param deployTicketIntake bool = false

@description('IP ranges (CIDR) allowed to call the ticket intake, e.g. the egress ranges of your Jira or ServiceNow site. Empty: any caller that holds the URL.')
param ticketIntakeAllowedCallerIpRanges array = []

@description('IP ranges (CIDR) allowed to read the intake URL from its Key Vault over the network. Empty: nobody until you add your address.')
param keyVaultAllowedIpRanges array = []

@description('Deploy the example results consumer: reads machine-action-results and comments on Sentinel incidents.')
param deployResultsConsumer bool = false

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'mde-containment'
})

var isolationQueue = 'isolation-requests'
var releaseQueue = 'release-requests'
var resultsQueue = 'machine-action-results'
var ledgerTable = 'containmentledger'
var deploymentContainer = 'app-package'

// Tracking follow-ups, fan-out and 429 retries go back onto the function's own trigger queue.
var triggerQueues = [
  isolationQueue
  releaseQueue
]
// The host moves a message that failed maxDequeueCount times to <queue>-poison. It cannot create
// queues with the roles it has, so they exist from the start.
var poisonQueues = [for queueName in triggerQueues: '${queueName}-poison']
var sendOnlyQueues = concat([
  resultsQueue
], poisonQueues)

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-mde-${resourceToken}'
    location: location
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'stmde${resourceToken}'
    location: location
    tags: allTags
    queueNames: concat(triggerQueues, sendOnlyQueues)
    ledgerTableName: ledgerTable
    deploymentContainerName: deploymentContainer
    skuName: storageSku
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-mde-${resourceToken}'
    appInsightsName: 'appi-mde-${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    triggerQueueNames: triggerQueues
    sendOnlyQueueNames: sendOnlyQueues
    ledgerTableName: ledgerTable
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

var appSettings = {
  // Functions host storage (leases, keys): Entra ID through the identity, no connection string.
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  // Telemetry with Entra auth: the connection string only names the endpoint, it is no secret.
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.outputs.clientId}'
  // Queue triggers, results publisher and ledger.
  CONTAINMENT_STORAGE__queueServiceUri: storage.outputs.queueEndpoint
  CONTAINMENT_STORAGE__tableServiceUri: storage.outputs.tableEndpoint
  CONTAINMENT_STORAGE__credential: 'managedidentity'
  CONTAINMENT_STORAGE__clientId: identity.outputs.clientId
  // MDE tokens come from the same identity.
  AZURE_CLIENT_ID: identity.outputs.clientId
  ISOLATION_QUEUE: isolationQueue
  RELEASE_QUEUE: releaseQueue
  RESULTS_QUEUE: resultsQueue
  LEDGER_TABLE: ledgerTable
  MDE_CLOUD: mdeCloud
  MDE_API_BASE_URL: mdeApiBaseUrl
  MDE_TOKEN_SCOPE: mdeTokenScope
  MDE_HTTP_CONNECT_TIMEOUT: '5'
  MDE_HTTP_READ_TIMEOUT: '30'
  DRY_RUN: dryRun ? 'true' : 'false'
  ISOLATION_POLICY: empty(isolationPolicy) ? '' : string(isolationPolicy)
  TICKET_MAPPINGS: empty(ticketMappings) ? '' : string(ticketMappings)
  // Tuning knobs: empty means the code's default (README, "Configuration").
  MDE_HTTP_RETRIES: ''
  MDE_MAX_THROTTLED_ATTEMPTS: ''
  TRACKING_SCHEDULE: ''
  TRACKING_DEADLINE_HOURS: ''
  DEVICE_OFFLINE_AFTER_MINUTES: ''
  DEVICE_CACHE_SECONDS: ''
}

module app 'modules/app.bicep' = {
  name: 'app'
  params: {
    name: 'func-mde-${resourceToken}'
    planName: 'plan-mde-${resourceToken}'
    location: location
    tags: allTags
    identityId: identity.outputs.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appSettings: union(appSettings, appSettingOverrides)
    maximumInstanceCount: maximumInstanceCount
  }
  // The host starts as soon as the app exists: its roles must be in place first.
  dependsOn: [
    rbac
  ]
}

module mdePermissions 'modules/mde-permissions.bicep' = if (grantMdePermissions) {
  name: 'mde-permissions'
  params: {
    principalId: identity.outputs.principalId
  }
}

module operatorAccess 'modules/operator-access.bicep' = if (!empty(operatorPrincipalId)) {
  name: 'operator-access'
  params: {
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    storageAccountName: storage.outputs.name
    requestQueueNames: [
      isolationQueue
      releaseQueue
    ]
    resultsQueueName: resultsQueue
  }
}

module sentinelPlaybooks 'modules/sentinel-playbook.bicep' = if (deploySentinelPlaybooks) {
  name: 'sentinel-playbooks'
  params: {
    incidentPlaybookName: 'logic-mde-incident-${resourceToken}'
    alertPlaybookName: 'logic-mde-alert-${resourceToken}'
    sentinelConnectionName: 'azuresentinel-mde-${resourceToken}'
    location: location
    tags: allTags
    storageAccountName: storage.outputs.name
    queueName: isolationQueue
    sentinelAutomationPrincipalId: sentinelAutomationPrincipalId
  }
}

module ticketIntake 'modules/ticket-intake.bicep' = if (deployTicketIntake) {
  name: 'ticket-intake'
  params: {
    workflowName: 'logic-mde-intake-${resourceToken}'
    keyVaultName: 'kv-mde-${resourceToken}'
    location: location
    tags: allTags
    storageAccountName: storage.outputs.name
    queueName: releaseQueue
    allowedCallerIpRanges: ticketIntakeAllowedCallerIpRanges
    keyVaultAllowedIpRanges: keyVaultAllowedIpRanges
    urlReaderPrincipalId: operatorPrincipalId
    urlReaderPrincipalType: operatorPrincipalType
  }
}

module resultsConsumer 'modules/results-consumer.bicep' = if (deployResultsConsumer) {
  name: 'results-consumer'
  params: {
    workflowName: 'logic-mde-results-${resourceToken}'
    location: location
    tags: allTags
    storageAccountName: storage.outputs.name
    queueName: resultsQueue
  }
}

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output ISOLATION_QUEUE string = isolationQueue
output RELEASE_QUEUE string = releaseQueue
output RESULTS_QUEUE string = resultsQueue
output SENTINEL_INCIDENT_PLAYBOOK_ID string = deploySentinelPlaybooks ? sentinelPlaybooks.outputs.incidentPlaybookId : ''
output SENTINEL_ALERT_PLAYBOOK_ID string = deploySentinelPlaybooks ? sentinelPlaybooks.outputs.alertPlaybookId : ''
output TICKET_INTAKE_WORKFLOW_NAME string = deployTicketIntake ? ticketIntake.outputs.workflowName : ''
output TICKET_INTAKE_KEY_VAULT_NAME string = deployTicketIntake ? ticketIntake.outputs.keyVaultName : ''
output TICKET_INTAKE_SECRET_NAME string = deployTicketIntake ? ticketIntake.outputs.secretName : ''
output RESULTS_CONSUMER_PRINCIPAL_ID string = deployResultsConsumer ? resultsConsumer.outputs.principalId : ''
