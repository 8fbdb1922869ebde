using './main.bicep'

// Values read from the environment. azd provides AZURE_ENV_NAME and AZURE_PRINCIPAL_ID, and the
// preprovision hook (infra/hooks/preprovision.py) writes the ones it works out: the operator's
// principal type and the vaults' create modes. With plain `az deployment group create`, run the
// hook first and export what it prints (docs/deploy.md).
param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'mde-containment')

// You (the deployer) may post test requests, peek at results, read the intake URL and set the
// ticket-system secrets. Empty: no operator (CI deployments).
param operatorPrincipalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
// azd passes no principal type to a .bicepparam file: the hook works it out from the login
// (User or ServicePrincipal); AZURE_PRINCIPAL_TYPE set by you wins.
param operatorPrincipalType = readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', '') != '' ? readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', '') : readEnvironmentVariable('OPERATOR_PRINCIPAL_TYPE', 'User')

// The MDE app roles: by default the postprovision hook runs infra/scripts/grant-mde-permissions.sh
// (GRANT_MDE_PERMISSIONS=true, an admin). The Graph Bicep module is a one-shot opt-in
// (GRANT_MDE_PERMISSIONS_WITH_BICEP=true): the hook turns it into MDE_GRANT_VIA_BICEP only while
// the roles are missing, because the grant cannot be deployed twice.
param grantMdePermissionsWithBicep = readEnvironmentVariable('MDE_GRANT_VIA_BICEP', 'false') == 'true'

param mdeCloud = readEnvironmentVariable('MDE_CLOUD', 'Commercial')

// Ticket systems the release path verifies every release with. The token and the password are
// never parameters: an operator sets them in the ticket-credentials vault (docs/deploy.md).
param jiraBaseUrl = readEnvironmentVariable('JIRA_BASE_URL', '')
param jiraUserEmail = readEnvironmentVariable('JIRA_USER_EMAIL', '')
param jiraApiVersion = readEnvironmentVariable('JIRA_API_VERSION', '3')
param serviceNowBaseUrl = readEnvironmentVariable('SERVICENOW_BASE_URL', '')
param serviceNowUsername = readEnvironmentVariable('SERVICENOW_USERNAME', '')

// A vault soft-deleted by `azd down` is recovered, not re-created (its name is taken for 90 days).
param ticketCredentialsVaultCreateMode = readEnvironmentVariable('TICKET_CREDENTIALS_VAULT_CREATE_MODE', 'default')
param ticketIntakeVaultCreateMode = readEnvironmentVariable('TICKET_INTAKE_VAULT_CREATE_MODE', 'default')

// Optional producers and the example results consumer (docs/producers.md). Off unless asked for.
// The IP range lists (ticketIntakeAllowedCallerIpRanges, keyVaultAllowedIpRanges) are set here,
// e.g. param keyVaultAllowedIpRanges = ['203.0.113.7/32'].
param deploySentinelPlaybooks = readEnvironmentVariable('DEPLOY_SENTINEL_PLAYBOOKS', 'false') == 'true'
param sentinelAutomationPrincipalId = readEnvironmentVariable('SENTINEL_AUTOMATION_PRINCIPAL_ID', '')
param deployTicketIntake = readEnvironmentVariable('DEPLOY_TICKET_INTAKE', 'false') == 'true'
param deployResultsConsumer = readEnvironmentVariable('DEPLOY_RESULTS_CONSUMER', 'false') == 'true'

// Every new deployment starts in dry run: switch off once results look right (a week is a good start).
param dryRun = readEnvironmentVariable('DRY_RUN', 'true') != 'false'

// One on-demand instance per function: MDE's call limits, not compute, set the pace (app.bicep).
param maximumInstanceCount = 1

param tags = {
  workload: 'soc-automation'
}
