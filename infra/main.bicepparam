using './main.bicep'

// Values read from the environment: azd provides them (AZURE_ENV_NAME, AZURE_PRINCIPAL_ID); with
// plain `az deployment group create`, export them first (docs/deploy.md).
param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'mde-containment')

// You (the deployer) may post test requests and peek at results. Leave empty in CI.
param operatorPrincipalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
param operatorPrincipalType = readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', 'User')

// Only an admin with AppRoleAssignment.ReadWrite.All can deploy the MDE grant; others run
// infra/scripts/grant-mde-permissions.sh or hand it to an admin.
param grantMdePermissions = readEnvironmentVariable('GRANT_MDE_PERMISSIONS', 'false') == 'true'

param mdeCloud = readEnvironmentVariable('MDE_CLOUD', 'Commercial')

// Optional producers and the example results consumer (docs/producers.md). Off unless asked for.
// The IP range lists (ticketIntakeAllowedCallerIpRanges, keyVaultAllowedIpRanges) are set here,
// e.g. param keyVaultAllowedIpRanges = ['203.0.113.7/32'].
param deploySentinelPlaybooks = readEnvironmentVariable('DEPLOY_SENTINEL_PLAYBOOKS', 'false') == 'true'
param sentinelAutomationPrincipalId = readEnvironmentVariable('SENTINEL_AUTOMATION_PRINCIPAL_ID', '')
param deployTicketIntake = readEnvironmentVariable('DEPLOY_TICKET_INTAKE', 'false') == 'true'
param deployResultsConsumer = readEnvironmentVariable('DEPLOY_RESULTS_CONSUMER', 'false') == 'true'

// Every new deployment starts in dry run: switch off once results look right (a week is a good start).
param dryRun = readEnvironmentVariable('DRY_RUN', 'true') != 'false'

param maximumInstanceCount = 40

param tags = {
  workload: 'soc-automation'
}
