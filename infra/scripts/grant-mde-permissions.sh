#!/usr/bin/env bash
# Grants the Function App's managed identity the MDE application roles it needs, on the
# WindowsDefenderATP service principal, through Microsoft Graph:
#   Machine.Isolate    isolate, unisolate, cancel
#   Machine.Read.All   resolve devices, read and list machine actions
#
# Who runs it: someone signed in to the Azure CLI (`az login`) with the Microsoft Graph permission
# AppRoleAssignment.ReadWrite.All (plus Application.Read.All), which in practice means a
# Privileged Role Administrator or Global Administrator of the tenant. It is the equivalent of
# infra/modules/mde-permissions.bicep for tenants where the deployer cannot use that module.
#
# Idempotent: roles the identity already holds are reported and left alone, so it can run on
# every provision (the azd postprovision hook does, with GRANT_MDE_PERMISSIONS=true). A managed
# identity created moments ago may not be visible to Microsoft Graph yet: the script waits for it
# (GRANT_WAIT_ATTEMPTS tries, GRANT_WAIT_SECONDS apart; default 18 x 10 s).
# App-role ids are looked up by value on the service principal, never hard-coded.
#
# Usage:
#   grant-mde-permissions.sh --principal-id <object id of the managed identity>
#   grant-mde-permissions.sh --identity-name <name> --resource-group <rg>
# Options:
#   --graph-url <url>   Microsoft Graph endpoint (default: the signed-in cloud's, from `az cloud show`)
#   --dry-run           print what would be granted, change nothing
#   --check             change nothing; exit 0 if every role is held, 3 if one is missing
set -euo pipefail

readonly DEFENDER_ATP_APP_ID="fc780465-2017-40d4-a0c5-307022471b92"
readonly ROLE_VALUES=("Machine.Isolate" "Machine.Read.All")

principal_id=""
identity_name=""
resource_group=""
graph_url=""
dry_run=false
check=false
wait_attempts="${GRANT_WAIT_ATTEMPTS:-18}"
wait_seconds="${GRANT_WAIT_SECONDS:-10}"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "error: $*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --principal-id) principal_id="${2:?--principal-id needs a value}"; shift 2 ;;
    --identity-name) identity_name="${2:?--identity-name needs a value}"; shift 2 ;;
    --resource-group | -g) resource_group="${2:?--resource-group needs a value}"; shift 2 ;;
    --graph-url) graph_url="${2:?--graph-url needs a value}"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --check) check=true; dry_run=true; shift ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done

command -v az >/dev/null || die "the Azure CLI (az) is required"

if [[ -z "$principal_id" ]]; then
  [[ -n "$identity_name" && -n "$resource_group" ]] \
    || die "give --principal-id, or --identity-name with --resource-group"
  principal_id="$(az identity show --name "$identity_name" --resource-group "$resource_group" \
    --query principalId --output tsv)"
fi
[[ "$principal_id" =~ ^[0-9a-fA-F-]{36}$ ]] || die "not an object id: '$principal_id'"

if [[ -z "$graph_url" ]]; then
  graph_url="$(az cloud show --query endpoints.microsoftGraphResourceId --output tsv)"
fi
graph_url="${graph_url%/}/v1.0"

# The service principal of WindowsDefenderATP exists once MDE is provisioned in the tenant.
sp_url="$graph_url/servicePrincipals?\$filter=appId%20eq%20'$DEFENDER_ATP_APP_ID'&\$select=id,appRoles"
resource_id="$(az rest --method get --url "$sp_url" --query 'value[0].id' --output tsv)"
[[ -n "$resource_id" && "$resource_id" != "None" ]] \
  || die "no WindowsDefenderATP service principal ($DEFENDER_ATP_APP_ID) in this tenant: is Defender for Endpoint provisioned?"

# A new identity reaches Microsoft Graph a little after Azure Resource Manager created it.
for ((attempt = 1; ; attempt++)); do
  if az rest --method get --url "$graph_url/servicePrincipals/$principal_id?\$select=id" --output none 2>/dev/null; then
    break
  fi
  ((attempt < wait_attempts)) \
    || die "Microsoft Graph does not know the principal $principal_id (waited $((wait_attempts * wait_seconds)) s): is it a managed identity of this tenant?"
  echo "waiting for Microsoft Graph to see the principal $principal_id ($attempt/$wait_attempts)" >&2
  sleep "$wait_seconds"
done

# What the identity already holds on that service principal.
held="$(az rest --method get \
  --url "$graph_url/servicePrincipals/$principal_id/appRoleAssignments" \
  --query "value[?resourceId=='$resource_id'].appRoleId" --output tsv)"

missing=0
for role_value in "${ROLE_VALUES[@]}"; do
  role_id="$(az rest --method get --url "$sp_url" \
    --query "value[0].appRoles[?value=='$role_value' && contains(allowedMemberTypes, 'Application')].id | [0]" \
    --output tsv)"
  [[ -n "$role_id" && "$role_id" != "None" ]] \
    || die "WindowsDefenderATP has no application role '$role_value'"

  if grep -qixF -- "$role_id" <<<"$held"; then
    echo "already granted: $role_value ($role_id)"
    continue
  fi
  missing=$((missing + 1))
  if [[ "$dry_run" == true ]]; then
    echo "would grant: $role_value ($role_id) to $principal_id"
    continue
  fi
  az rest --method post \
    --url "$graph_url/servicePrincipals/$resource_id/appRoleAssignedTo" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\":\"$principal_id\",\"resourceId\":\"$resource_id\",\"appRoleId\":\"$role_id\"}" \
    --output none
  echo "granted: $role_value ($role_id) to $principal_id"
done

if [[ "$check" == true ]]; then
  ((missing == 0)) || exit 3
  exit 0
fi
echo "Managed identity tokens are cached for up to 24 hours: the app sees new roles once its current token expires." >&2
