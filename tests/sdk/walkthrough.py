#!/usr/bin/env python3
"""The portal walkthrough through Microsoft's own Python SDK, against `pgvault serve`.

A client nobody on the pgvault project wrote (azure-mgmt-dataprotection, installed by
tools/test.sh) drives pgvault's REST API: create a vault, create a policy from the default
template with an archive rule and a tag, validate and protect a real database, take an adhoc
backup and follow its job to Completed, list recovery points, validate and trigger a restore into
a new database, suspend and resume, stop and resume. Every answer is deserialized by the SDK and
then checked field by field against the SDK's own model types (`strict`), because the SDK's
models are lenient: a datetime field holding garbage comes back as a string, silently.

Only the SDK and the standard library are used. The API token comes from the environment
(PGVAULT_SDK_TOKEN), never from the command line. On success the last line of stdout is one JSON
object (ids of what was made, the restored database) for tests/e2e/sdk.rs; on failure the exit
status is 1 and stderr says which step failed, why, and the HTTP exchanges that led there.

Usage: walkthrough.py --base-url https://127.0.0.1:PORT --ca-file ca.pem --policy-template T.json
         --datasource-url postgres://HOST:PORT/DB --secret-store-type File --secret-store-uri file:///...
         --target-database-url postgres://HOST:PORT/NEWDB --target-secret-store-type File
         --target-secret-store-uri file:///...   (see --help for the rest)
"""

import argparse
import copy
import datetime
import enum
import json
import os
import re
import sys
import time
import traceback
import typing
import urllib.parse

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models
from azure.mgmt.dataprotection.models import _models as _model_module
from azure.mgmt.dataprotection._utils.model_base import Model, _deserialize_datetime


class PgvaultToken:
    """An azure-core TokenCredential that hands the SDK pgvault's API token as the bearer token."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):  # pylint: disable=unused-argument
        # Far in the future: the SDK asks again only when a token is about to expire.
        return AccessToken(self._token, 4102444800)


class Failure(Exception):
    """A step of the walkthrough got something other than what Azure would answer."""


# ---------------------------------------------------------------------------------------------
# Strict checking of what the SDK deserialized, against the SDK's own declared types.

_HINTS = {}


def _hints(cls):
    if cls not in _HINTS:
        namespace = dict(vars(_model_module))
        namespace["_models"] = models
        _HINTS[cls] = typing.get_type_hints(cls, globalns=namespace)
    return _HINTS[cls]


def _optional(hint):
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


def _is_model_class(hint):
    return isinstance(hint, type) and issubclass(hint, Model)


def _check(raw, hint, path, problems):
    """Checks `raw`, the JSON value as the SDK holds it (a nested object already a model), against
    the SDK's type annotation `hint`. Primitive values are checked as they came: the SDK would
    coerce `"false"` to the bool True on access."""
    if hint is typing.Any:
        return
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        if raw is None and type(None) in args:
            return
        rest = [a for a in args if a is not type(None)]
        # `Union[str, SomeEnum]`: an extensible enum, any string.
        if all(a is str or (isinstance(a, type) and issubclass(a, enum.Enum)) for a in rest):
            if not isinstance(raw, str):
                problems.append(f"{path}: expected a string, got {raw!r}")
            return
        if len(rest) == 1:
            _check(raw, rest[0], path, problems)
            return
        for candidate in rest:
            trial = []
            _check(raw, candidate, path, trial)
            if not trial:
                return
        problems.append(f"{path}: {raw!r} is none of {rest}")
        return
    if origin is typing.Literal:
        if raw not in args:
            problems.append(f"{path}: expected one of {list(args)}, got {raw!r}")
        return
    if raw is None:
        problems.append(f"{path}: null where the SDK declares {getattr(hint, '__name__', hint)}")
        return
    if origin is list:
        if not isinstance(raw, list):
            problems.append(f"{path}: expected an array, got {raw!r}")
            return
        for i, item in enumerate(raw):
            _check(item, args[0], f"{path}[{i}]", problems)
        return
    if origin is dict:
        if not isinstance(raw, dict):
            problems.append(f"{path}: expected an object, got {raw!r}")
            return
        for k, item in raw.items():
            _check(item, args[1], f"{path}.{k}", problems)
        return
    if hint is datetime.datetime:
        value = raw
        if isinstance(raw, str):
            try:
                value = _deserialize_datetime(raw)
            except Exception:  # pylint: disable=broad-except
                pass
        if not isinstance(value, datetime.datetime):
            problems.append(f"{path}: not an RFC 3339 date-time: {raw!r}")
        elif value.tzinfo is None:
            problems.append(f"{path}: date-time without a time zone offset: {raw!r}")
        return
    if hint is bool:
        if not isinstance(raw, bool):
            problems.append(f"{path}: expected true/false, got {raw!r}")
        return
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            problems.append(f"{path}: expected an integer, got {raw!r}")
        return
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            problems.append(f"{path}: expected a number, got {raw!r}")
        return
    if hint is str:
        if not isinstance(raw, str):
            problems.append(f"{path}: expected a string, got {raw!r}")
        return
    if _is_model_class(hint):
        _check_model(raw, hint, path, problems)
        return
    # Anything else (an opaque `_Model`, an unusual annotation) is the SDK's business.


def _discriminator(cls):
    """The discriminator field of a polymorphic model class: (attribute, rest name), or None."""
    for attr, field in cls._attr_to_rest_field.items():  # pylint: disable=protected-access
        if field._is_discriminator:  # pylint: disable=protected-access
            return attr, field._rest_name  # pylint: disable=protected-access
    return None


def _check_model(raw, expected, path, problems):
    if isinstance(raw, Model):
        data, cls = raw._data, type(raw)  # pylint: disable=protected-access
    elif isinstance(raw, dict):
        # The SDK could not make a model of it (it kept the JSON): find out why, field by field.
        data, cls = raw, expected
        expected()  # computes the class's fields
        while "__mapping__" in cls.__dict__ and _discriminator(cls):
            sub = cls.__mapping__.get(data.get(_discriminator(cls)[1]))
            if sub is None or sub is cls:
                break
            sub()
            cls = sub
    else:
        problems.append(f"{path}: expected an object ({expected.__name__}), got {raw!r}")
        return
    hints = _hints(cls)
    for attr, field in cls._attr_to_rest_field.items():  # pylint: disable=protected-access
        hint = hints.get(attr)
        if hint is None:
            continue
        rest_name = field._rest_name  # pylint: disable=protected-access
        where = f"{path}.{rest_name}"
        if field._is_discriminator and typing.get_origin(hint) is not typing.Literal:  # pylint: disable=protected-access
            # Still the polymorphic base: the objectType named no type the SDK knows.
            known = sorted(getattr(cls, "__mapping__", {}))
            problems.append(f"{where}: {data.get(rest_name)!r} is not one of the SDK's types {known}")
            continue
        if rest_name not in data:
            if not _optional(hint):
                problems.append(f"{where}: missing (required in the SDK's {cls.__name__})")
            continue
        _check(data[rest_name], hint, where, problems)


# Every mismatch seen. The walkthrough goes on after one where it can, so that a run lists them
# all; it fails at the end if there is any.
PROBLEMS = []


def strict(obj, expected, what):
    """Records a problem unless `obj` (an SDK answer) matches the SDK model `expected` in every
    field; returns `obj`."""
    problems = []
    _check_model(obj, expected, what, problems)
    if problems:
        _problem(f"{what} does not match the SDK's {expected.__name__}:\n    " + "\n    ".join(problems))
    return obj


def expect(condition, message):
    if not condition:
        _problem(message)


def _problem(message):
    if message not in PROBLEMS:  # a job read again while it runs says the same thing again
        PROBLEMS.append(message)


# ---------------------------------------------------------------------------------------------
# What went over the wire, for the failure report (never the request headers: they carry the token).

class Exchanges:
    def __init__(self):
        self.seen = []
        self.step = "start"

    def hook(self, pipeline_response):
        request = pipeline_response.http_request
        response = pipeline_response.http_response
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() in ("location", "azure-asyncoperation", "retry-after", "content-type")
        }
        try:
            response.read()  # the SDK reads it next anyway (no streamed answers here)
            body = response.text()
        except Exception:  # pylint: disable=broad-except
            body = "<not read>"
        self.seen.append((request.method, request.url, response.status_code, headers, body))

    def last_with(self, method, fragment):
        for exchange in reversed(self.seen):
            if exchange[0] == method and fragment in urllib.parse.urlsplit(exchange[1]).path:
                return exchange
        return None

    def report(self, count=8):
        lines = []
        for method, url, status, headers, body in self.seen[-count:]:
            if len(body) > 2000:
                body = body[:2000] + "...(cut)"
            lines.append(f"{method} {url}\n  -> {status} {json.dumps(headers)}\n  {body}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


ISO8601_DURATION = re.compile(r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?")


def is_iso8601_duration(text):
    """`PT2M11.97S`, as the issue asks (Azure's own jobs also show .NET's `00:02:11.97`)."""
    return isinstance(text, str) and ISO8601_DURATION.fullmatch(text) is not None


def same_id(got, expected):
    """ARM ids compare without regard to case."""
    return isinstance(got, str) and got.lower() == expected.lower()


def datasource(url, object_type, server_only=False):
    """Azure's Datasource / DatasourceSet for a pgvault datasource URL postgres://host:port/db."""
    parts = urllib.parse.urlsplit(url)
    database = parts.path.lstrip("/")
    server = f"{parts.scheme}://{parts.netloc}"
    if server_only:
        return {
            "objectType": object_type,
            "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
            "resourceID": server,
            "resourceName": parts.hostname,
            "resourceType": "Microsoft.DBforPostgreSQL/servers",
            "resourceUri": "",
        }
    return {
        "objectType": object_type,
        "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
        "resourceID": url,
        "resourceName": database,
        "resourceType": "Microsoft.DBforPostgreSQL/servers/databases",
        "resourceUri": "",
    }


def credentials(store_type, uri):
    return {
        "objectType": "SecretStoreBasedAuthCredentials",
        "secretStoreResource": {"secretStoreType": store_type, "uri": uri},
    }


def policy_with_archive_rule(template, tag):
    """The default template plus what the portal's 'Add retention' gives: a retention rule named
    `tag`, kept one month in the vault tier then moved to the archive tier for six months, and a
    tag of that name for the first backup of each week."""
    policy = copy.deepcopy(template)
    policy.pop("name", None)  # az prints it in the template; it is not part of BackupPolicy
    store = lambda kind: {"dataStoreType": kind, "objectType": "DataStoreInfoBase"}  # noqa: E731
    policy["policyRules"].append(
        {
            "name": tag,
            "objectType": "AzureRetentionRule",
            "isDefault": False,
            "lifecycles": [
                {
                    "sourceDataStore": store("VaultStore"),
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P1M"},
                    "targetDataStoreCopySettings": [
                        {"dataStore": store("ArchiveStore"), "copyAfter": {"objectType": "CopyOnExpiryOption"}}
                    ],
                },
                {
                    "sourceDataStore": store("ArchiveStore"),
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
                    "targetDataStoreCopySettings": [],
                },
            ],
        }
    )
    backup_rule = next(r for r in policy["policyRules"] if r["objectType"] == "AzureBackupRule")
    backup_rule["trigger"]["taggingCriteria"].append(
        {
            "isDefault": False,
            "taggingPriority": 20,
            "tagInfo": {"tagName": tag},
            "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfWeek"]}],
        }
    )
    return policy, backup_rule["name"]


JOB_ENDED = ("Completed", "CompletedWithWarnings", "Succeeded", "Failed", "Cancelled", "Canceled")


def follow_job(client, args, job_id, what):
    """The job as jobs.get shows it, followed until it ends: Azure's LRO may succeed as soon as
    the job is created, and the portal then follows the job. Returns the ended job."""
    for _ in range(args.job_polls):
        job = strict(client.jobs.get(args.resource_group, args.vault, job_id), models.AzureBackupJobResource, what)
        if job.properties.status in JOB_ENDED:
            return job
        time.sleep(0.1)  # a bounded poll of the job's state, as the SDK's own LRO polling does
    raise Failure(f"{what}: still {job.properties.status!r} after {args.job_polls} reads")


def operation_status_names_job(client, args, exchanges, action_fragment, job_id, what):
    """Azure's LROs answer with an Azure-AsyncOperation URL whose operation status names the job
    in properties.jobId; read it back through the SDK's own operation-status call."""
    initial = exchanges.last_with("POST", action_fragment)
    expect(initial is not None, f"{what}: no POST {action_fragment} was seen")
    _, _, status, headers, _ = initial
    expect(status in (200, 201, 202), f"{what}: POST answered {status}")
    async_url = next((v for k, v in headers.items() if k.lower() == "azure-asyncoperation"), None)
    expect(async_url, f"{what}: the POST answer has no Azure-AsyncOperation header (Azure's LRO answer)")
    path = urllib.parse.urlsplit(async_url).path
    vault_context = re.search(r"/backupVaults/([^/]+)/operationStatus/([^/]+)$", path)
    location_context = re.search(r"/locations/([^/]+)/operationStatus/([^/]+)$", path)
    unquote = urllib.parse.unquote
    if vault_context:
        status = client.operation_status_backup_vault_context.get(
            args.resource_group, unquote(vault_context.group(1)), unquote(vault_context.group(2))
        )
    elif location_context:
        status = client.operation_status.get(unquote(location_context.group(1)), unquote(location_context.group(2)))
    else:
        raise Failure(f"{what}: Azure-AsyncOperation {async_url} is not an operationStatus resource")
    strict(status, models.OperationResource, f"{what} operation status")
    expect(status.status == "Succeeded", f"{what}: operation status {status.status!r}, expected Succeeded")
    expect(
        isinstance(status.properties, models.OperationJobExtendedInfo) and status.properties.job_id == job_id,
        f"{what}: operation status properties {status.properties!r} do not name job {job_id}",
    )


def walkthrough(client, args, exchanges):
    rg, vault_name = args.resource_group, args.vault
    done = {}

    step = exchanges.step = "create the vault"
    vault = client.backup_vaults.begin_create_or_update(
        rg,
        vault_name,
        models.BackupVaultResource(
            location=args.location,
            tags={"purpose": "sdk-walkthrough"},
            properties=models.BackupVault(
                storage_settings=[models.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")]
            ),
        ),
    ).result()
    strict(vault, models.BackupVaultResource, step)
    vault_id = f"/subscriptions/{args.subscription_id}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault_name}"
    expect(same_id(vault.id, vault_id), f"{step}: id {vault.id!r}, expected {vault_id!r}")
    expect(vault.name == vault_name, f"{step}: name {vault.name!r}")
    expect(vault.location == args.location, f"{step}: location {vault.location!r}")
    expect(vault.type.lower() == "microsoft.dataprotection/backupvaults", f"{step}: type {vault.type!r}")
    expect(vault.tags == {"purpose": "sdk-walkthrough"}, f"{step}: tags {vault.tags!r}")
    expect(vault.properties.provisioning_state in (None, "Succeeded"), f"{step}: {vault.properties.provisioning_state}")
    shown = strict(client.backup_vaults.get(rg, vault_name), models.BackupVaultResource, "get the vault")
    expect(shown.id == vault.id, f"get the vault: id {shown.id!r}, created {vault.id!r}")
    expect(
        [s.datastore_type for s in shown.properties.storage_settings or []] == ["VaultStore"],
        f"get the vault: storageSettings {shown.properties.storage_settings!r}",
    )
    listed = [strict(v, models.BackupVaultResource, "list vaults") for v in client.backup_vaults.get_in_resource_group(rg)]
    expect(vault.id in [v.id for v in listed], f"list vaults in {rg}: {[v.id for v in listed]}")
    done["vault"] = vault.id

    step = exchanges.step = "create the policy"
    with open(args.policy_template, encoding="utf-8") as f:
        template = json.load(f)
    policy_body, backup_rule = policy_with_archive_rule(template, args.tag)
    policy = client.backup_policies.create_or_update(rg, vault_name, args.policy, {"properties": policy_body})
    strict(policy, models.BaseBackupPolicyResource, step)
    policy_id = f"{vault_id}/backupPolicies/{args.policy}"
    expect(same_id(policy.id, policy_id), f"{step}: id {policy.id!r}, expected {policy_id!r}")
    for what, p in (
        (step, policy),
        ("get the policy", strict(client.backup_policies.get(rg, vault_name, args.policy), models.BaseBackupPolicyResource, "get the policy")),
    ):
        expect(p.name == args.policy, f"{what}: name {p.name!r}")
        rules = {r.name: r for r in p.properties.policy_rules}
        expect(set(rules) == {backup_rule, "Default", args.tag}, f"{what}: rules {sorted(rules)}")
        archive = rules[args.tag]
        expect(isinstance(archive, models.AzureRetentionRule), f"{what}: {args.tag} is {type(archive).__name__}")
        copies = archive.lifecycles[0].target_data_store_copy_settings or []
        expect(
            [c.data_store.data_store_type for c in copies] == ["ArchiveStore"]
            and isinstance(copies[0].copy_after, models.CopyOnExpiryOption),
            f"{what}: the {args.tag} rule's vault lifecycle does not copy to the archive on expiry: {archive.lifecycles[0]!r}",
        )
        expect(
            [l.source_data_store.data_store_type for l in archive.lifecycles] == ["VaultStore", "ArchiveStore"],
            f"{what}: {args.tag} lifecycles {archive.lifecycles!r}",
        )
        tags = {t.tag_info.tag_name: t for t in rules[backup_rule].trigger.tagging_criteria}
        expect(set(tags) == {"Default", args.tag}, f"{what}: tags {sorted(tags)}")
        expect(
            tags[args.tag].criteria and tags[args.tag].criteria[0].absolute_criteria == ["FirstOfWeek"],
            f"{what}: {args.tag} criteria {tags[args.tag].criteria!r}",
        )
        # Azure assigns tag ids: the tag name and an underscore.
        expect(tags[args.tag].tag_info.id == f"{args.tag}_", f"{what}: tag id {tags[args.tag].tag_info.id!r}")
    listed = [strict(p, models.BaseBackupPolicyResource, "list policies") for p in client.backup_policies.list(rg, vault_name)]
    expect(policy.id in [p.id for p in listed], f"list policies: {[p.id for p in listed]}")
    done["policy"] = policy.id

    step = exchanges.step = "validate for backup"
    instance_properties = {
        "objectType": "BackupInstance",
        "friendlyName": args.instance,
        "dataSourceInfo": datasource(args.datasource_url, "Datasource"),
        "dataSourceSetInfo": datasource(args.datasource_url, "DatasourceSet", server_only=True),
        "policyInfo": {"policyId": policy_id},
        "datasourceAuthCredentials": credentials(args.secret_store_type, args.secret_store_uri),
    }
    validated = client.backup_instances.begin_validate_for_backup(
        rg, vault_name, {"backupInstance": instance_properties}
    ).result()
    if validated is not None:
        strict(validated, models.OperationJobExtendedInfo, step)

    step = exchanges.step = "protect the database"
    instance = client.backup_instances.begin_create_or_update(
        rg, vault_name, args.instance, {"properties": instance_properties}
    ).result()
    strict(instance, models.BackupInstanceResource, step)
    instance_id = f"{vault_id}/backupInstances/{args.instance}"
    expect(same_id(instance.id, instance_id), f"{step}: id {instance.id!r}, expected {instance_id!r}")
    expect(instance.name == args.instance, f"{step}: name {instance.name!r}")
    expect(
        instance.properties.current_protection_state == "ProtectionConfigured",
        f"{step}: currentProtectionState {instance.properties.current_protection_state!r}",
    )
    expect(
        instance.properties.protection_status is not None
        and instance.properties.protection_status.status == "ProtectionConfigured",
        f"{step}: protectionStatus {instance.properties.protection_status!r}",
    )
    expect(
        instance.properties.data_source_info.resource_id == args.datasource_url,
        f"{step}: resourceID {instance.properties.data_source_info.resource_id!r}",
    )
    expect(
        same_id(instance.properties.policy_info.policy_id, policy_id),
        f"{step}: policyId {instance.properties.policy_info.policy_id!r}",
    )
    secret = instance.properties.datasource_auth_credentials
    expect(
        isinstance(secret, models.SecretStoreBasedAuthCredentials)
        and secret.secret_store_resource.secret_store_type == args.secret_store_type
        and secret.secret_store_resource.uri == args.secret_store_uri
        and not secret.secret_store_resource.value,
        f"{step}: datasourceAuthCredentials {secret!r}",
    )
    listed = [strict(i, models.BackupInstanceResource, "list instances") for i in client.backup_instances.list(rg, vault_name)]
    expect(instance.id in [i.id for i in listed], f"list instances: {[i.id for i in listed]}")
    done["instance"] = instance.id

    step = exchanges.step = "adhoc backup"
    started = client.backup_instances.begin_adhoc_backup(
        rg,
        vault_name,
        args.instance,
        models.TriggerBackupRequest(
            backup_rule_options=models.AdHocBackupRuleOptions(
                rule_name=backup_rule,
                trigger_option=models.AdhocBackupTriggerOption(retention_tag_override=args.tag),
            )
        ),
    ).result()
    expect(started is not None, f"{step}: the operation's result has no body (expected OperationJobExtendedInfo with jobId)")
    strict(started, models.OperationJobExtendedInfo, step)
    expect(started.job_id, f"{step}: no jobId in {started!r}")
    operation_status_names_job(client, args, exchanges, f"/backupInstances/{args.instance}/backup", started.job_id, step)
    job = follow_job(client, args, started.job_id, "the backup job")
    p = job.properties
    expect(p.status == "Completed", f"the backup job: status {p.status!r}, error {p.error_details!r}")
    expect(p.operation == "Backup" and p.operation_category == "Backup", f"the backup job: operation {p.operation!r}/{p.operation_category!r}")
    expect(p.is_user_triggered is True, f"the backup job: isUserTriggered {p.is_user_triggered!r}")
    expect(p.vault_name == vault_name, f"the backup job: vaultName {p.vault_name!r}")
    expect(p.end_time is not None and p.end_time >= p.start_time, f"the backup job: {p.start_time} .. {p.end_time}")
    expect(is_iso8601_duration(p.duration), f"the backup job: duration {p.duration!r} is not an ISO 8601 duration")
    done["backupJobId"] = started.job_id

    step = exchanges.step = "list recovery points"
    points = [
        strict(rp, models.AzureBackupRecoveryPointResource, step)
        for rp in client.recovery_points.list(rg, vault_name, args.instance)
    ]
    expect(len(points) == 1, f"{step}: {len(points)} recovery points, expected the one just taken")
    point = points[0]
    rp = point.properties
    expect(isinstance(rp, models.AzureBackupDiscreteRecoveryPoint), f"{step}: {type(rp).__name__}")
    expect(rp.retention_tag_name == args.tag, f"{step}: retentionTagName {rp.retention_tag_name!r}, expected {args.tag!r}")
    expect(rp.recovery_point_id == point.name, f"{step}: recoveryPointId {rp.recovery_point_id!r} vs name {point.name!r}")
    tiers = [d.type for d in rp.recovery_point_data_stores_details or []]
    expect(tiers == ["VaultStore"], f"{step}: datastore tiers {tiers}, expected the vault tier only (archive after a month)")
    expect(rp.expiry_time is not None, f"{step}: no expiryTime ({args.tag} keeps a month in the vault tier)")
    got = strict(client.recovery_points.get(rg, vault_name, args.instance, point.name), models.AzureBackupRecoveryPointResource, "get the recovery point")
    expect(got.id == point.id, f"get the recovery point: id {got.id!r}")
    done["recoveryPointId"] = point.name

    step = exchanges.step = "validate the restore"
    restore = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point.name,
        "sourceDataStoreType": "VaultStore",
        "sourceResourceId": args.datasource_url,
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "restoreLocation": args.location,
            "datasourceInfo": datasource(args.target_database_url, "Datasource"),
            "datasourceSetInfo": datasource(args.target_database_url, "DatasourceSet", server_only=True),
            "datasourceAuthCredentials": credentials(args.target_secret_store_type, args.target_secret_store_uri),
        },
    }
    validated = client.backup_instances.begin_validate_for_restore(
        rg, vault_name, args.instance, {"restoreRequestObject": restore}
    ).result()
    if validated is not None:
        strict(validated, models.OperationJobExtendedInfo, step)

    step = exchanges.step = "restore into a new database"
    started = client.backup_instances.begin_trigger_restore(rg, vault_name, args.instance, restore).result()
    expect(started is not None, f"{step}: the operation's result has no body (expected OperationJobExtendedInfo with jobId)")
    strict(started, models.OperationJobExtendedInfo, step)
    expect(started.job_id, f"{step}: no jobId in {started!r}")
    operation_status_names_job(client, args, exchanges, f"/backupInstances/{args.instance}/restore", started.job_id, step)
    job = follow_job(client, args, started.job_id, "the restore job")
    p = job.properties
    expect(p.status == "Completed", f"the restore job: status {p.status!r}, error {p.error_details!r}")
    expect(p.operation == "Restore" and p.operation_category == "Restore", f"the restore job: operation {p.operation!r}/{p.operation_category!r}")
    expect(is_iso8601_duration(p.duration), f"the restore job: duration {p.duration!r} is not an ISO 8601 duration")
    info = p.extended_info
    expect(
        info is not None and info.source_recover_point is not None and info.source_recover_point.recovery_point_id == point.name,
        f"the restore job: extendedInfo.sourceRecoverPoint {info and info.source_recover_point!r}",
    )
    expect(info.recovery_destination, "the restore job: no extendedInfo.recoveryDestination")
    done["restoreJobId"] = started.job_id
    done["restoredDatabase"] = urllib.parse.urlsplit(args.target_database_url).path.lstrip("/")

    step = exchanges.step = "list jobs"
    jobs = [strict(j, models.AzureBackupJobResource, step) for j in client.jobs.list(rg, vault_name)]
    names = [j.name for j in jobs]
    expect(done["backupJobId"] in names and done["restoreJobId"] in names, f"{step}: {names}")

    def state(what):
        bi = strict(client.backup_instances.get(rg, vault_name, args.instance), models.BackupInstanceResource, what)
        status = bi.properties.protection_status.status if bi.properties.protection_status else None
        plain = lambda v: getattr(v, "value", v)  # noqa: E731  (a known value reads as the SDK's enum)
        return plain(bi.properties.current_protection_state), plain(status)

    for action, resume in (
        ("suspend, then resume protection", client.backup_instances.begin_resume_protection),
        ("suspend, then resume backups", client.backup_instances.begin_resume_backups),
    ):
        exchanges.step = action
        client.backup_instances.begin_suspend_backups(rg, vault_name, args.instance).result()
        current, _ = state(f"{action}: after suspend")
        expect(current == "BackupSchedulesSuspended", f"{action}: currentProtectionState {current!r} after suspendBackups")
        resume(rg, vault_name, args.instance).result()
        current, status = state(f"{action}: after resume")
        expect(
            (current, status) == ("ProtectionConfigured", "ProtectionConfigured"),
            f"{action}: after resume {current!r}/{status!r}",
        )

    action = exchanges.step = "stop protection, then resume"
    client.backup_instances.begin_stop_protection(rg, vault_name, args.instance).result()
    current, status = state(f"{action}: after stop")
    expect((current, status) == ("ProtectionStopped", "ProtectionStopped"), f"{action}: after stopProtection {current!r}/{status!r}")
    client.backup_instances.begin_resume_protection(rg, vault_name, args.instance).result()
    current, status = state(f"{action}: after resume")
    expect((current, status) == ("ProtectionConfigured", "ProtectionConfigured"), f"{action}: after resume {current!r}/{status!r}")
    # Stop and suspend keep every recovery point.
    left = [rp.name for rp in client.recovery_points.list(rg, vault_name, args.instance)]
    expect(left == [point.name], f"{action}: recovery points now {left}")

    done["exchanges"] = len(exchanges.seen)
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base-url", required=True, help="pgvault serve's address, https://HOST:PORT")
    parser.add_argument("--ca-file", help="PEM file of the CA (or self-signed certificate) to trust")
    parser.add_argument("--subscription-id", default="00000000-0000-0000-0000-000000000000")
    parser.add_argument("--resource-group", default="pgvault-sdk")
    parser.add_argument("--location", default="local")
    parser.add_argument("--vault", default="SdkVault")
    parser.add_argument("--policy", default="SdkPolicy")
    parser.add_argument("--tag", default="Weekly", help="the archive retention rule and its tag")
    parser.add_argument("--instance", required=True, help="the backup instance's name")
    parser.add_argument("--policy-template", required=True, help="a default policy template (az's get-default-policy-template)")
    parser.add_argument("--datasource-url", required=True, help="postgres://HOST:PORT/DB to protect")
    parser.add_argument("--secret-store-type", required=True)
    parser.add_argument("--secret-store-uri", required=True)
    parser.add_argument("--target-database-url", required=True, help="postgres://HOST:PORT/NEWDB to restore into")
    parser.add_argument("--target-secret-store-type", required=True)
    parser.add_argument("--target-secret-store-uri", required=True)
    parser.add_argument("--job-polls", type=int, default=1200, help="how many jobs.get reads (0.1 s apart) before giving up on a job")
    args = parser.parse_args()

    token = os.environ.get("PGVAULT_SDK_TOKEN")
    if not token:
        print("walkthrough: set PGVAULT_SDK_TOKEN to an API token (pgvault api-token create --role Contributor)", file=sys.stderr)
        return 2
    exchanges = Exchanges()
    client = DataProtectionMgmtClient(
        PgvaultToken(token),
        args.subscription_id,
        base_url=args.base_url,
        connection_verify=args.ca_file or True,
        use_env_settings=False,  # no proxy or netrc from the environment
        polling_interval=0,  # between polls, unless the server says Retry-After
        retry_total=0,  # an error answer fails the walkthrough at once
        raw_response_hook=exchanges.hook,
    )
    error = None
    try:
        done = walkthrough(client, args, exchanges)
    except Exception as e:  # pylint: disable=broad-except
        error = e
    if not PROBLEMS and error is None:
        print(json.dumps(done))
        return 0
    if PROBLEMS:
        print(f"walkthrough: {len(PROBLEMS)} answer(s) unlike Azure's:", file=sys.stderr)
        for i, problem in enumerate(PROBLEMS, 1):
            print(f"{i}. {problem}", file=sys.stderr)
    if isinstance(error, Failure):
        print(f"walkthrough stopped at step '{exchanges.step}': {error}", file=sys.stderr)
    elif error is not None:
        print(f"walkthrough stopped at step '{exchanges.step}': {type(error).__name__}: {error}", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)
    print(f"\nthe last HTTP exchanges ({len(exchanges.seen)} in all):\n{exchanges.report()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
