// mde-containment: queue-triggered Azure Functions that isolate and release devices through the
// Microsoft Defender for Endpoint API. Deploys into one resource group:
//   identities   two user-assigned identities the app runs as: host (its blob containers, the
//                deployment package, telemetry) and mde (MDE tokens, queues, ledger, secrets)
//   storage      hardened account: request and result queues (+ poison queues), ledger table,
//                deployment and host containers; Entra ID only
//   monitoring   Log Analytics + Application Insights, local auth disabled; every module sends
//                its audit logs (queue and table writes, secret reads, Logic App runs, the
//                app's logs) to the one workspace
//   rbac         each identity's data roles, each at the narrowest scope
//   ticketCredentials the vault holding the Jira / ServiceNow credentials (set by an operator,
//                read through Key Vault references by the mde identity, per secret)
//   app          Flex Consumption plan + Python 3.11 Function App with identity-based settings
//   mdePermissions (optional, one-shot) the MDE app roles with the Graph extension; the default
//                is scripts/grant-mde-permissions.sh, run by the postprovision hook
//   operatorAccess (optional) lets one operator post requests and peek at results
//   sentinelPlaybooks (optional) Sentinel incident and alert playbooks -> isolation-requests
//   ticketIntake (optional) HTTP intake for Jira / ServiceNow -> release-requests, URL in Key Vault
//   resultsConsumer (optional) example reader of machine-action-results that comments on incidents
// Each producer and the consumer runs as its own identity with one role on its one queue
// (docs/producers.md, "Security: identities and roles"); none of them can use the app's identities.
// No keys or connection strings anywhere: every Azure connection is a managed identity. The only
// secrets are the ticket-system credentials and the intake URL, each in Key Vault.

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

@description('Ceiling on Flex Consumption on-demand instances per function group (see modules/app.bicep for why one).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 1

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

@description('Also send storage reads (every queue poll, every ledger read) to Log Analytics. Writes and deletes always go.')
param logStorageReads bool = false

@description('Grant the MDE identity Machine.Isolate and Machine.Read.All with the Microsoft Graph extension, once. Not re-runnable (the grant cannot be updated): the preprovision hook sets it only while the roles are missing, and the postprovision hook switches it off. Default: scripts/grant-mde-permissions.sh.')
param grantMdePermissionsWithBicep bool = false

@description('Jira site (https URL) the release path verifies releases with. Empty: Jira not configured.')
param jiraBaseUrl string = ''

@description('Jira account the API token belongs to (Jira Cloud). Empty with a token: a Data Center personal access token (Bearer).')
param jiraUserEmail string = ''

@description('Jira REST API version: 3 for Jira Cloud, 2 for Jira Data Center.')
@allowed([
  '2'
  '3'
])
param jiraApiVersion string = '3'

@description('ServiceNow instance (https URL) the release path verifies releases with. Empty: ServiceNow not configured.')
param serviceNowBaseUrl string = ''

@description('ServiceNow account the release path signs in as.')
param serviceNowUsername string = ''

@description('default, or recover: bring back the ticket-credentials vault that `azd down` soft-deleted (the preprovision hook sets it).')
@allowed([
  'default'
  'recover'
])
param ticketCredentialsVaultCreateMode string = 'default'

@description('default, or recover: bring back the ticket-intake vault that `azd down` soft-deleted (the preprovision hook sets it).')
@allowed([
  'default'
  'recover'
])
param ticketIntakeVaultCreateMode string = 'default'

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
// The Functions host's own containers (leases, keys): created up front, so its roles can be
// scoped to them.
var hostContainers = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]
var ticketCredentialsVaultName = 'kv-tkt-${resourceToken}'
var jiraTokenSecretName = 'jira-api-token'
var serviceNowSecretName = 'servicenow-password'
var jiraConfigured = !empty(jiraBaseUrl)
var serviceNowConfigured = !empty(serviceNowBaseUrl)

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

module hostIdentity 'modules/identity.bicep' = {
  name: 'host-identity'
  params: {
    name: 'id-host-${resourceToken}'
    location: location
    tags: allTags
  }
}

module mdeIdentity 'modules/identity.bicep' = {
  name: 'mde-identity'
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
    hostContainerNames: hostContainers
    skuName: storageSku
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    logStorageReads: logStorageReads
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
    hostPrincipalId: hostIdentity.outputs.principalId
    mdePrincipalId: mdeIdentity.outputs.principalId
    storageAccountName: storage.outputs.name
    hostContainerNames: concat(hostContainers, [
      deploymentContainer
    ])
    triggerQueueNames: triggerQueues
    sendOnlyQueueNames: sendOnlyQueues
    ledgerTableName: ledgerTable
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module ticketCredentials 'modules/ticket-credentials.bicep' = {
  name: 'ticket-credentials'
  params: {
    vaultName: ticketCredentialsVaultName
    location: location
    tags: allTags
    createMode: ticketCredentialsVaultCreateMode
    readerPrincipalId: mdeIdentity.outputs.principalId
    jiraConfigured: jiraConfigured
    serviceNowConfigured: serviceNowConfigured
    jiraTokenSecretName: jiraTokenSecretName
    serviceNowSecretName: serviceNowSecretName
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

var appSettings = {
  // Functions host storage (leases, keys): Entra ID through the host identity, no connection string.
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: hostIdentity.outputs.clientId
  // Telemetry with Entra auth: the connection string only names the endpoint, it is no secret.
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${hostIdentity.outputs.clientId}'
  // Queue triggers, results publisher and ledger: the MDE identity.
  CONTAINMENT_STORAGE__queueServiceUri: storage.outputs.queueEndpoint
  CONTAINMENT_STORAGE__tableServiceUri: storage.outputs.tableEndpoint
  CONTAINMENT_STORAGE__credential: 'managedidentity'
  CONTAINMENT_STORAGE__clientId: mdeIdentity.outputs.clientId
  // MDE tokens come from the same identity, which also resolves the Key Vault references.
  AZURE_CLIENT_ID: mdeIdentity.outputs.clientId
  ISOLATION_QUEUE: isolationQueue
  RELEASE_QUEUE: releaseQueue
  RESULTS_QUEUE: resultsQueue
  LEDGER_TABLE: ledgerTable
  MDE_CLOUD: mdeCloud
  MDE_API_BASE_URL: mdeApiBaseUrl
  MDE_TOKEN_SCOPE: mdeTokenScope
  MDE_HTTP_CONNECT_TIMEOUT: '5'
  MDE_HTTP_READ_TIMEOUT: '30'
  // isolate_fn and release_fn scale as separate groups, each up to maximumInstanceCount
  // instances, and every instance has its own MDE call budget: each keeps to its share.
  MDE_BUDGET_SHARES: string(2 * maximumInstanceCount)
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
  // Ticket systems the release path verifies every release with. The token and the password are
  // Key Vault references (resolved by the platform with the MDE identity), set only once their
  // system is configured; an operator puts the values in the vault (docs/deploy.md).
  JIRA_BASE_URL: jiraBaseUrl
  JIRA_USER_EMAIL: jiraUserEmail
  JIRA_API_TOKEN: jiraConfigured ? '@Microsoft.KeyVault(VaultName=${ticketCredentialsVaultName};SecretName=${jiraTokenSecretName})' : ''
  JIRA_API_VERSION: jiraApiVersion
  SERVICENOW_BASE_URL: serviceNowBaseUrl
  SERVICENOW_USERNAME: serviceNowUsername
  SERVICENOW_PASSWORD: serviceNowConfigured ? '@Microsoft.KeyVault(VaultName=${ticketCredentialsVaultName};SecretName=${serviceNowSecretName})' : ''
}

module app 'modules/app.bicep' = {
  name: 'app'
  params: {
    name: 'func-mde-${resourceToken}'
    planName: 'plan-mde-${resourceToken}'
    location: location
    tags: allTags
    hostIdentityId: hostIdentity.outputs.id
    mdeIdentityId: mdeIdentity.outputs.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appSettings: union(appSettings, appSettingOverrides)
    maximumInstanceCount: maximumInstanceCount
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
  // The host starts as soon as the app exists: its roles, and the MDE identity's grants on the
  // secrets its settings refer to, must be in place first.
  dependsOn: [
    rbac
    ticketCredentials
  ]
}

module mdePermissions 'modules/mde-permissions.bicep' = if (grantMdePermissionsWithBicep) {
  name: 'mde-permissions'
  params: {
    principalId: mdeIdentity.outputs.principalId
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
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
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
    keyVaultCreateMode: ticketIntakeVaultCreateMode
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
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
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_MANAGED_IDENTITY_NAME string = mdeIdentity.outputs.name
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = mdeIdentity.outputs.principalId
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = mdeIdentity.outputs.clientId
output AZURE_HOST_IDENTITY_NAME string = hostIdentity.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.workspaceId
output TICKET_CREDENTIALS_KEY_VAULT_NAME string = ticketCredentials.outputs.name
output JIRA_TOKEN_SECRET_NAME string = jiraTokenSecretName
output SERVICENOW_SECRET_NAME string = serviceNowSecretName
output ISOLATION_QUEUE string = isolationQueue
output RELEASE_QUEUE string = releaseQueue
output RESULTS_QUEUE string = resultsQueue
output SENTINEL_INCIDENT_PLAYBOOK_ID string = deploySentinelPlaybooks ? sentinelPlaybooks.outputs.incidentPlaybookId : ''
output SENTINEL_ALERT_PLAYBOOK_ID string = deploySentinelPlaybooks ? sentinelPlaybooks.outputs.alertPlaybookId : ''
output TICKET_INTAKE_WORKFLOW_NAME string = deployTicketIntake ? ticketIntake.outputs.workflowName : ''
output TICKET_INTAKE_KEY_VAULT_NAME string = deployTicketIntake ? ticketIntake.outputs.keyVaultName : ''
output TICKET_INTAKE_SECRET_NAME string = deployTicketIntake ? ticketIntake.outputs.secretName : ''
output RESULTS_CONSUMER_PRINCIPAL_ID string = deployResultsConsumer ? resultsConsumer.outputs.principalId : ''
