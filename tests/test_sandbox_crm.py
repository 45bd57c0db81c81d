"""The CRM emulators, driven through the real SDKs over real sockets.

simple-salesforce talks HTTPS to the Salesforce emulator (test CA), the
HubSpot SDK plain HTTP to the HubSpot emulator. Faults, latency, counters
and the clock are driven in-process and over the ``/__sandbox__/`` HTTP
control endpoints.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
import urllib3
from hubspot.crm.associations.v4 import (
    BatchInputPublicDefaultAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicDefaultAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
    PublicObjectId,
)
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import NotFoundException, ServiceException
from hubspot.crm.contacts.exceptions import UnauthorizedException as ContactsUnauthorized
from hubspot.crm.objects.calls import ApiException as CallsApiException  # each SDK sub-package
from hubspot.crm.objects.notes import ApiException as NotesApiException  # has its own class
from hubspot.crm.objects.notes import SimplePublicObjectInputForCreate as NoteInput
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator, sf_id18
from sandbox.testing import (  # noqa: F401  (pytest fixtures)
    hubspot_client,
    hubspot_emulator,
    hubspot_server,
    salesforce_client,
    salesforce_emulator,
    salesforce_server,
    salesforce_session,
)

V = "/services/data/v59.0"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sf_emu(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:  # noqa: F811
    return salesforce_emulator


@pytest.fixture
def sf(sf_emu: SalesforceEmulator):
    return salesforce_client(sf_emu)


@pytest.fixture
def hs_emu(hubspot_emulator: HubSpotEmulator) -> HubSpotEmulator:  # noqa: F811
    return hubspot_emulator


@pytest.fixture
def hs(hs_emu: HubSpotEmulator):
    return hubspot_client(hs_emu)


def new_contact(**props: str) -> SimplePublicObjectInputForCreate:
    return SimplePublicObjectInputForCreate(properties=props)


# ====================================================================== Salesforce


def test_sf_ids_carry_the_case_safe_checksum() -> None:
    # documented example: 001A0000006Vm9r -> 001A0000006Vm9rIAC
    assert sf_id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"


def test_sf_create_get_update_delete_and_replication(sf, sf_emu) -> None:
    leads = sf.Lead  # SDK quirk: each ``sf.Lead`` is a new SFType with its own api_usage
    created = leads.create({"FirstName": "Ana", "LastName": "Dupont", "Company": "ACME",
                            "Email": "ana@acme.fr", "Relais_Id__c": "msg-1"})
    assert created["success"] is True and created["errors"] == []
    lead_id = created["id"]
    assert len(lead_id) == 18 and lead_id.startswith("00Q")
    assert leads.api_usage["api-usage"].used == 1 and sf.api_usage == {}

    rec = sf.Lead.get(lead_id)
    assert rec["attributes"]["type"] == "Lead"
    assert rec["Status"] == "Open - Not Contacted"
    assert rec["CreatedDate"] == rec["SystemModstamp"]
    assert rec["CreatedDate"].endswith("+0000") and "." in rec["CreatedDate"]
    assert sf.Lead.get(lead_id[:15])["Id"] == lead_id  # 15-char ids are accepted

    sf_emu.clock.advance(120)
    assert sf.Lead.update(lead_id, {"Phone": "+33 6 11 22 33 44"}) == 204
    updated = sf.Lead.get(lead_id)
    assert updated["Phone"] == "+33 6 11 22 33 44"
    assert updated["SystemModstamp"] > rec["SystemModstamp"]
    assert updated["CreatedDate"] == rec["CreatedDate"]

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.create({"LastName": "NoCompany"})
    assert err.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert err.value.content[0]["fields"] == ["Company"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.create({"LastName": "X", "Company": "Y", "Bogus__c": 1})
    assert err.value.content == [{"errorCode": "INVALID_FIELD", "fields": ["Bogus__c"],
                                  "message": "No such column 'Bogus__c' on sobject of type Lead"}]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.update(lead_id, {"CreatedDate": "2024-01-01T00:00:00Z"})
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"

    start = sf_emu.clock.now() - timedelta(hours=1)
    sf_emu.clock.advance(120)
    assert sf.Lead.delete(lead_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Lead.get(lead_id)
    assert err.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"
    sf_emu.clock.advance(120)
    end = sf_emu.clock.now()
    deleted = sf.Lead.deleted(start, end)
    assert [d["id"] for d in deleted["deletedRecords"]] == [lead_id]
    assert sf.Lead.updated(start, end)["ids"] == []
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.updated(end - timedelta(days=31), end)
    assert err.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    assert sf_emu.records("Lead") == []


def test_sf_upsert_by_external_id(sf, sf_emu) -> None:
    assert sf.Contact.upsert("Relais_Id__c/call-42", {"LastName": "Martin"}) == 201
    again = sf.Contact.upsert("Relais_Id__c/call-42", {"LastName": "Martin-Leroy"},
                              raw_response=True)
    assert again.status_code == 200  # v46+: 200 with a body saying created: false
    assert again.json()["created"] is False
    rows = sf_emu.find("Contact", Relais_Id__c="call-42")
    assert len(rows) == 1 and rows[0]["LastName"] == "Martin-Leroy"
    assert sf.Contact.get_by_custom_id("Relais_Id__c", "call-42")["Id"] == rows[0]["Id"]

    sf_emu.configure(upsert_update_status=204)
    assert sf.Contact.upsert("Relais_Id__c/call-42", {"FirstName": "Paul"}) == 204

    with pytest.raises(SalesforceMalformedRequest) as err:  # unique external id
        sf.Contact.create({"LastName": "Other", "Relais_Id__c": "CALL-42"})
    assert err.value.content[0]["errorCode"] == "DUPLICATE_VALUE"

    sf_emu.configure(external_id_unique=False)
    sf_emu.insert("Contact", {"LastName": "Twin", "Relais_Id__c": "call-42"})
    with pytest.raises(SalesforceMoreThanOneRecord) as err:
        sf.Contact.upsert("Relais_Id__c/call-42", {"LastName": "Which"})
    assert err.value.status == 300 and len(err.value.content) == 2
    assert all(u.startswith(f"{V}/sobjects/Contact/003") for u in err.value.content)
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.upsert("LastName/Martin", {"FirstName": "X"})  # not an external id


def test_sf_query_subset_and_paging(sf, sf_emu) -> None:
    for i in range(2_150):
        sf_emu.insert("Lead", {"LastName": f"L{i:04d}", "Company": "Bulk" if i % 2 else "Solo",
                               "Email": f"l{i}@example.com"})
    first = sf.query("SELECT Id, LastName FROM Lead")
    assert first["totalSize"] == 2_150 and first["done"] is False
    assert len(first["records"]) == 2_000
    assert first["nextRecordsUrl"].startswith(f"{V}/query/01g")
    assert list(first["records"][0]) == ["attributes", "Id", "LastName"]
    everything = sf.query_all("SELECT Id FROM Lead")
    assert everything["totalSize"] == 2_150
    assert len({r["Id"] for r in everything["records"]}) == 2_150

    sf_emu.configure(query_page_size=500)
    pages = 0
    result = sf.query("SELECT Id FROM Lead WHERE Company = 'bulk'")  # case-insensitive
    while True:
        pages += 1
        if result["done"]:
            break
        result = sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)
    assert pages == 3 and result["totalSize"] == 1_075

    ordered = sf.query("SELECT LastName FROM Lead WHERE LastName LIKE 'L00_5' "
                       "ORDER BY LastName DESC LIMIT 3")
    assert [r["LastName"] for r in ordered["records"]] == ["L0095", "L0085", "L0075"]
    picked = sf.query("SELECT Email FROM Lead WHERE (Email IN ('l1@example.com', "
                      "'L2@EXAMPLE.COM') OR LastName = 'L0003') AND Company != 'Nobody'")
    assert sorted(r["Email"] for r in picked["records"]) == [
        "l1@example.com", "l2@example.com", "l3@example.com"]
    assert sf.query("SELECT COUNT() FROM Lead WHERE Company = 'Solo'")["totalSize"] == 1_075

    cutoff = sf_emu.clock.now()
    sf_emu.clock.advance(60)
    fresh = sf_emu.insert("Lead", {"LastName": "Fresh", "Company": "New"})
    stamp = (cutoff + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    delta = sf.query(f"SELECT Id FROM Lead WHERE SystemModstamp > {stamp}")
    assert [r["Id"] for r in delta["records"]] == [fresh]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query(f"SELECT Id FROM Lead WHERE SystemModstamp > '{stamp}'")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE LastName = 'a' AND Company = 'b' OR Email = 'c'",
         "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE CreatedDate = LAST_N_DAYS:3", "MALFORMED_QUERY"),
        ("SELECT Id, (SELECT Id FROM Tasks) FROM Lead", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead GROUP BY Company", "MALFORMED_QUERY"),
        ("SELECT Owner.Name FROM Lead", "INVALID_FIELD"),
        ("SELECT Nope FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM Account", "INVALID_TYPE"),
    ],
)
def test_sf_refuses_what_it_does_not_support(sf, soql: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query(soql)
    assert err.value.status == 400
    assert err.value.content[0]["errorCode"] == code


def test_sf_collections(sf, sf_emu) -> None:
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "One"},
        {"attributes": {"type": "Contact"}, "FirstName": "NoLastName"},
        {"attributes": {"type": "Lead"}, "LastName": "Two", "Company": "C"},
    ]
    out = sf.restful("composite/sobjects", method="POST",
                     json={"allOrNone": False, "records": records})
    assert [r["success"] for r in out] == [True, False, True]
    assert out[1] == {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                      "message": "Required fields are missing: [LastName]",
                      "fields": ["LastName"]}]}
    assert out[0]["id"].startswith("003") and out[2]["id"].startswith("00Q")

    before = len(sf_emu.records("Contact"))
    rolled = sf.restful("composite/sobjects", method="POST",
                        json={"allOrNone": True, "records": records})
    assert [r["errors"][0]["statusCode"] for r in rolled] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUIRED_FIELD_MISSING",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert len(sf_emu.records("Contact")) == before

    upsert = sf.restful("composite/sobjects/Contact/Relais_Id__c", method="PATCH", json={
        "allOrNone": False,
        "records": [{"attributes": {"type": "Contact"}, "Relais_Id__c": f"r{i}",
                     "LastName": f"U{i}"} for i in range(3)]})
    assert [r["created"] for r in upsert] == [True, True, True]
    upsert = sf.restful("composite/sobjects/Contact/Relais_Id__c", method="PATCH", json={
        "records": [{"attributes": {"type": "Contact"}, "Relais_Id__c": "r1",
                     "LastName": "U1bis"}]})
    assert upsert[0]["created"] is False
    assert sf_emu.find("Contact", Relais_Id__c="r1")[0]["LastName"] == "U1bis"

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful("composite/sobjects", method="POST", json={"records": [
            {"attributes": {"type": "Contact"}, "LastName": str(i)} for i in range(201)]})
    assert err.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_sf_composite_references_and_one_api_call(sf, sf_emu) -> None:
    used_before = sf_emu.api_usage()[0]
    out = sf.restful("composite", method="POST", json={"compositeRequest": [
        {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "caller",
         "body": {"LastName": "Caller", "Phone": "0102030405"}},
        {"method": "POST", "url": f"{V}/sobjects/Task", "referenceId": "msg",
         "body": {"Subject": "Rappeler", "WhoId": "@{caller.id}", "Relais_Id__c": "m-9"}},
        {"method": "GET", "url": f"{V}/sobjects/Task/@{{msg.id}}?fields=WhoId,Subject",
         "referenceId": "check"},
    ]})["compositeResponse"]
    assert [r["httpStatusCode"] for r in out] == [201, 201, 200]
    assert out[2]["body"]["WhoId"] == out[0]["body"]["id"]
    assert out[0]["httpHeaders"]["Location"] == f"{V}/sobjects/Contact/{out[0]['body']['id']}"
    assert sf_emu.api_usage()[0] == used_before + 1

    out = sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "a",
         "body": {"LastName": "Kept?"}},
        {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "b",
         "body": {"LastName": "NoCompany"}},
    ]})["compositeResponse"]
    assert [r["httpStatusCode"] for r in out] == [400, 400]
    assert out[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert out[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert sf_emu.find("Contact", LastName="Kept?") == []


def test_sf_expired_session_refresh_and_revoked_token(sf, sf_emu) -> None:
    sf.query("SELECT Id FROM Lead")
    sf_emu.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.query("SELECT Id FROM Lead")
    assert err.value.status == 401
    assert err.value.content == [{"message": "Session expired or invalid",
                                  "errorCode": "INVALID_SESSION_ID"}]

    http = salesforce_session(sf_emu)
    token = http.post(f"{sf_emu.url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": sf_emu.client_id,
        "client_secret": sf_emu.client_secret, "refresh_token": sf_emu.refresh_token})
    assert token.status_code == 200
    body = token.json()
    assert "expires_in" not in body and "refresh_token" not in body
    assert body["instance_url"] == sf_emu.url and body["token_type"] == "Bearer"
    assert body["issued_at"].isdigit() and len(body["issued_at"]) == 13
    assert {"access_token", "id", "signature", "scope"} <= set(body)
    fresh = salesforce_client(sf_emu, session_id=body["access_token"])
    assert fresh.query("SELECT COUNT() FROM Lead")["totalSize"] == 0

    sf_emu.clock.advance(sf_emu.config.session_timeout_seconds + 1)  # inactivity timeout
    with pytest.raises(SalesforceExpiredSession):
        fresh.query("SELECT COUNT() FROM Lead")

    sf_emu.revoke_refresh_token(sf_emu.refresh_token)
    again = http.post(f"{sf_emu.url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": sf_emu.client_id,
        "client_secret": sf_emu.client_secret, "refresh_token": sf_emu.refresh_token})
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant",
                            "error_description": "expired access/refresh token"}


def test_sf_authorization_code_flow(sf_emu) -> None:
    http = salesforce_session(sf_emu)
    redirect = "https://relais.example/oauth/callback"
    resp = http.get(f"{sf_emu.url}/services/oauth2/authorize", allow_redirects=False, params={
        "response_type": "code", "client_id": sf_emu.client_id, "redirect_uri": redirect,
        "state": "tenant-7"})
    assert resp.status_code == 302
    location = urlsplit(resp.headers["location"])
    params = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    assert params["state"] == ["tenant-7"]
    form = {"grant_type": "authorization_code", "code": params["code"][0],
            "client_id": sf_emu.client_id, "client_secret": sf_emu.client_secret,
            "redirect_uri": redirect}
    token = http.post(f"{sf_emu.url}/services/oauth2/token", data=form).json()
    assert token["refresh_token"] and token["access_token"]
    client = salesforce_client(sf_emu, session_id=token["access_token"])
    assert client.Lead.create({"LastName": "Oauth", "Company": "C"})["success"] is True
    reuse = http.post(f"{sf_emu.url}/services/oauth2/token", data=form)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    cc = http.post(f"{sf_emu.url}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": sf_emu.client_id,
        "client_secret": sf_emu.client_secret}).json()
    assert "refresh_token" not in cc and cc["scope"] == "api"
    bad = http.post(f"{sf_emu.url}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": sf_emu.client_id,
        "client_secret": "wrong"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"


def test_sf_daily_api_allocation(sf, sf_emu) -> None:
    sf_emu.configure(daily_api_limit=5, session_timeout_seconds=10**6)
    for _ in range(5):
        sf.query("SELECT COUNT() FROM Lead")
    assert sf.api_usage["api-usage"].used == 5 and sf.api_usage["api-usage"].total == 5
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.query("SELECT COUNT() FROM Lead")
    assert err.value.status == 403
    assert err.value.content == [{"message": "TotalRequests Limit exceeded.",
                                  "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    raw = salesforce_session(sf_emu).get(f"{sf_emu.url}{V}/limits", headers={
        "Authorization": f"Bearer {sf_emu.session_id}"})
    assert raw.status_code == 403 and raw.headers["Sforce-Limit-Info"] == "api-usage=5/5"
    assert sf_emu.api_usage() == (5, 5)  # refused calls are not counted
    sf_emu.clock.advance(86_401)  # rolling 24 h window
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    assert sf.api_usage["api-usage"].used == 1


def test_sf_duplicate_rules_and_bypass(sf, sf_emu) -> None:
    first = sf.Lead.create({"LastName": "Roux", "Company": "R", "Email": "Zoe.Roux@ex.fr",
                            "Phone": "+33 (0)1 23 45 67 89"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.create({"LastName": "Roux2", "Company": "R", "Email": "zoe.roux@EX.fr"})
    error = err.value.content[0]
    assert error["errorCode"] == "DUPLICATES_DETECTED"
    dup = error["duplicateResut"]
    assert dup["duplicateRuleEntityType"] == "Lead" and dup["allowSave"] is True
    match = dup["matchResults"][0]
    assert match["entityType"] == "Lead" and match["size"] == 1
    assert match["matchRecords"][0]["record"]["Id"] == first
    with pytest.raises(SalesforceMalformedRequest):  # phone digits match too
        sf.Lead.create({"LastName": "Roux3", "Company": "R", "Phone": "+33 0 1-23-45-67-89"})

    bypass = {"Sforce-Duplicate-Rule-Header": "allowSave=true"}
    second = sf.Lead.create({"LastName": "Roux2", "Company": "R", "Email": "zoe.roux@ex.fr"},
                            headers=bypass)
    assert second["success"] is True
    assert len(sf_emu.find("Lead", Email="zoe.roux@ex.fr")) == 2

    out = sf.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "Lead"}, "LastName": "R4", "Company": "R",
         "Email": "ZOE.ROUX@ex.fr"}]})
    assert out[0]["errors"][0]["statusCode"] == "DUPLICATES_DETECTED"
    sf_emu.configure(duplicate_rules_enabled=False)
    assert sf.Lead.create({"LastName": "R5", "Company": "R", "Email": "zoe.roux@ex.fr"})["id"]


def test_sf_describe_versions_limits(sf, sf_emu) -> None:
    fields = {f["name"]: f for f in sf.Event.describe()["fields"]}
    assert fields["Relais_Id__c"]["externalId"] is True
    assert fields["Relais_Id__c"]["updateable"] is True
    assert fields["SystemModstamp"]["type"] == "datetime"
    assert fields["SystemModstamp"]["createable"] is False
    assert {o["name"] for o in sf.describe()["sobjects"]} == {"Lead", "Contact", "Task", "Event"}
    versions = salesforce_session(sf_emu).get(f"{sf_emu.url}/services/data/").json()
    assert versions[-1] == {"label": "Winter '24", "url": "/services/data/v59.0",
                            "version": "59.0"}
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 15_000
    event = sf.Event.create({"Subject": "RDV", "StartDateTime": "2025-03-30T01:30:00+01:00",
                             "EndDateTime": "2025-03-30T03:30:00+02:00"})
    stored = sf.Event.get(event["id"])
    assert stored["DurationInMinutes"] == 60  # across the DST change, in instants
    assert stored["StartDateTime"] == "2025-03-30T00:30:00.000+0000"


# ====================================================================== HubSpot


def test_hs_crud_properties_and_validation(hs, hs_emu) -> None:
    data, status, headers = hs.crm.contacts.basic_api.create_with_http_info(
        new_contact(email="Jean.Dupont@Example.fr", firstname="Jean", phone="+33612345678"))
    assert status == 201
    assert data.properties["email"] == "jean.dupont@example.fr"
    assert data.properties["createdate"] == data.properties["lastmodifieddate"]
    assert data.archived is False and data.created_at.tzinfo is not None
    assert headers["X-HubSpot-RateLimit-Max"] == "100"

    got = hs.crm.contacts.basic_api.get_by_id(data.id, properties=["phone", "relais_id"])
    assert got.properties["phone"] == "+33612345678" and got.properties["relais_id"] is None
    by_email = hs.crm.contacts.basic_api.get_by_id("jean.dupont@example.fr", id_property="email")
    assert by_email.id == data.id

    hs_emu.clock.advance(5)
    patched = hs.crm.contacts.basic_api.update(
        data.id, SimplePublicObjectInput(properties={"lastname": "Dupont"}))
    assert patched.properties["lastname"] == "Dupont"
    assert patched.properties["lastmodifieddate"] > data.properties["lastmodifieddate"]
    assert patched.updated_at > data.updated_at

    with pytest.raises(ApiException) as err:
        hs.crm.contacts.basic_api.create(new_contact(email="x@y.fr", shoe_size="42"))
    body = json.loads(err.value.body)
    assert err.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    assert json.loads(body["message"].split(": ", 1)[1])[0]["error"] == "PROPERTY_DOESNT_EXIST"
    with pytest.raises(CallsApiException) as err:
        hs.crm.objects.calls.basic_api.create(NoteInput(properties={
            "hs_timestamp": "1735725600000", "hs_call_direction": "SIDEWAYS"}))
    assert "INVALID_OPTION" in json.loads(err.value.body)["message"]

    props = {p.name: p for p in hs.crm.properties.core_api.get_all("contacts").results}
    assert props["relais_id"].has_unique_value is True
    assert props["email"].has_unique_value is True
    assert props["lastmodifieddate"].modification_metadata.read_only_value is True
    assert props["hs_lead_status"].type == "enumeration"

    assert hs.crm.contacts.basic_api.archive_with_http_info(data.id)[1] == 204
    with pytest.raises(NotFoundException):
        hs.crm.contacts.basic_api.get_by_id(data.id)
    assert hs_emu.objects("contacts") == []
    assert len(hs_emu.objects("contacts", archived=True)) == 1


def test_hs_batch_upsert_200_then_207(hs, hs_emu) -> None:
    def upsert(*inputs: SimplePublicObjectBatchInputUpsert):
        return hs.crm.contacts.batch_api.upsert_with_http_info(
            BatchInputSimplePublicObjectBatchInputUpsert(inputs=list(inputs)))

    def item(rid: str, **props: str) -> SimplePublicObjectBatchInputUpsert:
        return SimplePublicObjectBatchInputUpsert(id_property="relais_id", id=rid,
                                                  properties=props)

    data, status, _ = upsert(item("m-1", email="a@ex.fr"), item("m-2", email="b@ex.fr"))
    assert status == 200 and data.status == "COMPLETE"
    assert sorted((r.properties["relais_id"], r.new) for r in data.results) == [
        ("m-1", True), ("m-2", True)]
    # By default one conflicting input fails the whole batch (409), nothing written.
    with pytest.raises(ApiException) as whole:
        upsert(item("m-1", firstname="Ann"), item("m-3", email="B@ex.fr"))
    assert whole.value.status == 409 and "Existing ID" in json.loads(whole.value.body)["message"]
    assert hs_emu.find("contacts", relais_id="m-1")[0]["properties"].get("firstname") is None
    hs_emu.configure(batch_all_or_nothing=False)  # the per-input answer, also seen
    data, status, _ = upsert(item("m-1", firstname="Ann"), item("m-3", email="B@ex.fr"))
    assert status == 207 and data.num_errors == 1
    assert [(r.properties["relais_id"], r.new) for r in data.results] == [("m-1", False)]
    assert data.errors[0].category == "CONFLICT"
    assert data.errors[0].message == (
        f"Contact already exists. Existing ID: {hs_emu.find('contacts', relais_id='m-2')[0]['id']}")
    assert len(hs_emu.objects("contacts")) == 2
    assert hs_emu.find("contacts", relais_id="m-1")[0]["properties"]["email"] == "a@ex.fr"

    with pytest.raises(ApiException) as err:  # idProperty must be unique
        upsert(SimplePublicObjectBatchInputUpsert(id_property="firstname", id="Ann",
                                                  properties={}))
    assert err.value.status == 400
    with pytest.raises(ApiException) as err:
        upsert(*[item(f"x{i}") for i in range(101)])
    assert err.value.status == 400 and "100" in json.loads(err.value.body)["message"]


def test_hs_batch_create_read_and_list_paging(hs, hs_emu) -> None:
    def inputs(*emails: str, trace: bool = False) -> Any:
        return BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
            SimplePublicObjectBatchInputForCreate(
                properties={"email": e}, object_write_trace_id=f"t-{e}" if trace else None)
            for e in emails])

    data, status, _ = hs.crm.contacts.batch_api.create_with_http_info(inputs("a@x.fr", "b@x.fr"))
    assert status == 201 and len(data.results) == 2
    with pytest.raises(ApiException) as err:  # all or nothing without objectWriteTraceId
        hs.crm.contacts.batch_api.create(inputs("c@x.fr", "a@x.fr"))
    assert err.value.status == 409
    assert hs_emu.find("contacts", email="c@x.fr") == []
    data, status, _ = hs.crm.contacts.batch_api.create_with_http_info(
        inputs("c@x.fr", "a@x.fr", trace=True))  # multi-status: partial success
    assert status == 207 and [r.properties["email"] for r in data.results] == ["c@x.fr"]
    assert data.errors[0].context == {"objectWriteTraceId": ["t-a@x.fr"]}

    ids = sorted(int(o["id"]) for o in hs_emu.objects("contacts"))
    data, status, _ = hs.crm.contacts.batch_api.read_with_http_info(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=str(ids[0])), SimplePublicObjectId(id="999")],
            properties=["email"], properties_with_history=[]))
    assert status == 207 and data.results[0].properties["email"] == "a@x.fr"
    assert data.errors[0].category == "OBJECT_NOT_FOUND"
    assert data.errors[0].context == {"ids": ["999"]}

    first = hs.crm.contacts.basic_api.get_page(limit=2)
    assert [int(r.id) for r in first.results] == ids[:2]
    second = hs.crm.contacts.basic_api.get_page(limit=2, after=first.paging.next.after)
    assert [int(r.id) for r in second.results] == ids[2:] and second.paging is None
    assert len(hs.crm.contacts.get_all()) == 3


def test_hs_search_paging_cap_and_own_rate_limit(hs, hs_emu) -> None:
    hs_emu.seed("contacts", 450, lambda i: {"email": f"c{i}@ex.fr", "lastname": f"N{i:03d}",
                                            "phone": "+331" if i % 3 == 0 else None})
    hs_emu.configure(search_rate_limit_per_second=1000)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        req = PublicObjectSearchRequest(limit=200, after=after, sorts=["-lastname"],
                                        properties=["lastname"])
        page = hs.crm.contacts.search_api.do_search(public_object_search_request=req)
        pages += 1
        assert page.total == 450
        seen += [r.properties["lastname"] for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages == 3 and len(seen) == 450 and seen[0] == "N449" and seen[-1] == "N000"

    filtered = hs.crm.contacts.search_api.do_search(public_object_search_request=
        PublicObjectSearchRequest(filter_groups=[
            {"filters": [{"propertyName": "phone", "operator": "HAS_PROPERTY"},
                         {"propertyName": "lastname", "operator": "LT", "value": "N010"}]},
            {"filters": [{"propertyName": "email", "operator": "IN",
                          "values": ["c400@ex.fr", "C401@EX.FR"]}]}], limit=100))
    assert filtered.total == 6  # N000 N003 N006 N009 + c400 c401

    cutoff = hs_emu.clock.now()
    hs_emu.clock.advance(60)
    late = hs_emu.insert("contacts", {"email": "late@ex.fr"})
    recent = hs.crm.contacts.search_api.do_search(public_object_search_request=
        PublicObjectSearchRequest(filter_groups=[{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GT",
             "value": str(int(cutoff.timestamp() * 1000))}]}]))
    assert [r.id for r in recent.results] == [late]

    for after, limit, ok in (("9800", 200, True), ("9900", 200, False), ("10000", 1, False)):
        req = PublicObjectSearchRequest(limit=limit, after=after)
        if ok:
            assert hs.crm.contacts.search_api.do_search(public_object_search_request=req)
        else:
            with pytest.raises(ApiException) as err:
                hs.crm.contacts.search_api.do_search(public_object_search_request=req)
            assert err.value.status == 400
    with pytest.raises(ApiException) as err:
        hs.crm.contacts.search_api.do_search(public_object_search_request=
                                             PublicObjectSearchRequest(limit=201))
    assert err.value.status == 400

    hs_emu.configure(search_rate_limit_per_second=5)
    hs_emu.clock.advance(2)
    for _ in range(5):
        hs.crm.contacts.search_api.do_search(public_object_search_request=
                                             PublicObjectSearchRequest(limit=1))
    with pytest.raises(ApiException) as err:
        hs.crm.contacts.search_api.do_search(public_object_search_request=
                                             PublicObjectSearchRequest(limit=1))
    assert err.value.status == 429
    assert json.loads(err.value.body)["errorType"] == "RATE_LIMIT"
    assert hs.crm.contacts.basic_api.get_page(limit=1).results  # other endpoints unaffected


def test_hs_search_cannot_page_past_10000_results(hs, hs_emu) -> None:
    hs_emu.seed("contacts", 10_050)
    hs_emu.configure(search_rate_limit_per_second=10_000, rate_limit_max=10_000)
    seen: set[str] = set()
    after: str | None = None
    while True:
        req = PublicObjectSearchRequest(limit=200, after=after, filter_groups=[{"filters": [
            {"propertyName": "lastname", "operator": "EQ", "value": "sandbox"}]}])
        try:
            page = hs.crm.contacts.search_api.do_search(public_object_search_request=req)
        except ApiException as exc:
            assert exc.status == 400 and after == "10000"
            break
        assert page.total == 10_050
        seen.update(r.id for r in page.results)
        after = page.paging.next.after
    assert len(seen) == 10_000  # the last 50 are only reachable with another filter (by id)
    rest = hs.crm.contacts.search_api.do_search(public_object_search_request=
        PublicObjectSearchRequest(limit=200, sorts=["hs_object_id"], filter_groups=[
            {"filters": [{"propertyName": "hs_object_id", "operator": "GT",
                          "value": max(seen, key=int)}]}]))
    assert rest.total == 50 and not seen & {r.id for r in rest.results}


def test_hs_unique_values_conflict_409(hs, hs_emu) -> None:
    first = hs.crm.contacts.basic_api.create(new_contact(email="dup@ex.fr"))
    with pytest.raises(ApiException) as err:
        hs.crm.contacts.basic_api.create(new_contact(email="DUP@ex.fr", firstname="Again"))
    body = json.loads(err.value.body)
    assert err.value.status == 409 and body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"
    assert body["status"] == "error" and body["correlationId"]

    note = {"hs_timestamp": "2025-01-01T09:00:00Z", "hs_note_body": "Rappel", "relais_id": "n-1"}
    created = hs.crm.objects.notes.basic_api.create(NoteInput(properties=note))
    with pytest.raises(NotesApiException) as err:
        hs.crm.objects.notes.basic_api.create(NoteInput(properties=note))
    assert err.value.status == 409
    assert json.loads(err.value.body)["message"].endswith(f"Existing ID: {created.id}")
    assert len(hs_emu.objects("notes")) == 1
    with pytest.raises(NotesApiException) as err:  # hs_timestamp is required on engagements
        hs.crm.objects.notes.basic_api.create(NoteInput(properties={"hs_note_body": "x"}))
    assert err.value.status == 400 and "REQUIRED_PROPERTY" in str(err.value.body)


def test_hs_rate_limit_429_with_headers_and_daily_cap(hs, hs_emu) -> None:
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    hs_emu.clock.set_offset((noon - datetime.now(UTC)).total_seconds())  # daily cap: same day
    hs_emu.configure(rate_limit_max=5)
    remaining = []
    for _ in range(5):
        _, _, headers = hs.crm.contacts.basic_api.get_page_with_http_info(limit=1)
        remaining.append(int(headers["X-HubSpot-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    with pytest.raises(ApiException) as err:
        hs.crm.contacts.basic_api.get_page(limit=1)
    assert err.value.status == 429
    body = json.loads(err.value.body)
    assert body["status"] == "error" and body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your secondly limit."
    assert body["policyName"] == "SECONDLY" and body["correlationId"]
    headers = err.value.headers
    assert headers["X-HubSpot-RateLimit-Max"] == "5"
    assert headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert headers["X-HubSpot-RateLimit-Daily"] == "250000"
    assert hs_emu.knobs.counters()["hs.rate_limited.secondly"] == 1

    oauth = hubspot_client(hs_emu, hs_emu.issue_access_token())  # another app, own window
    _, _, oheaders = oauth.crm.contacts.basic_api.get_page_with_http_info(limit=1)
    assert oheaders["X-HubSpot-RateLimit-Remaining"] == "4"
    assert "X-HubSpot-RateLimit-Daily" not in oheaders

    hs_emu.clock.advance(10.01)  # rolling window
    hs.crm.contacts.basic_api.get_page(limit=1)

    hs_emu.configure(rate_limit_max=100, daily_limit=8)
    hs.crm.contacts.basic_api.get_page(limit=1)  # the 7th today
    _, _, headers = hs.crm.contacts.basic_api.get_page_with_http_info(limit=1)
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    with pytest.raises(ApiException) as err:
        hs.crm.contacts.basic_api.get_page(limit=1)
    assert err.value.status == 429 and json.loads(err.value.body)["policyName"] == "DAILY"


def test_hs_oauth_expiry_refresh_and_invalid_grant(hs_emu) -> None:
    client = hubspot_client(hs_emu, hs_emu.access_token)
    client.crm.contacts.basic_api.get_page(limit=1)
    hs_emu.clock.advance(1800 + 42)
    with pytest.raises(ContactsUnauthorized) as err:
        client.crm.contacts.basic_api.get_page(limit=1)
    body = json.loads(err.value.body)
    assert body["category"] == "EXPIRED_AUTHENTICATION"
    assert body["message"] == "The OAuth token used to make this call expired 42 second(s) ago."

    tokens = client.oauth.tokens_api.create(
        grant_type="refresh_token", client_id=hs_emu.client_id,
        client_secret=hs_emu.client_secret, refresh_token=hs_emu.refresh_token)
    assert tokens.expires_in == 1800 and tokens.token_type == "bearer"
    assert tokens.refresh_token == hs_emu.refresh_token  # HubSpot does not rotate it
    fresh = hubspot_client(hs_emu, tokens.access_token)
    assert fresh.crm.contacts.basic_api.get_page(limit=1).results == []
    info = httpx.get(f"{hs_emu.url}/oauth/v1/access-tokens/{tokens.access_token}").json()
    assert info["hub_id"] == hs_emu.config.portal_id and info["expires_in"] == 1800

    with pytest.raises(ContactsUnauthorized) as err:
        hubspot_client(hs_emu, "pat-na1-unknown").crm.contacts.basic_api.get_page()
    assert json.loads(err.value.body)["category"] == "INVALID_AUTHENTICATION"

    hs_emu.revoke_refresh_token(hs_emu.refresh_token)
    with pytest.raises(Exception) as err:  # the oauth package has its own ApiException
        client.oauth.tokens_api.create(
            grant_type="refresh_token", client_id=hs_emu.client_id,
            client_secret=hs_emu.client_secret, refresh_token=hs_emu.refresh_token)
    assert err.value.status == 400
    body = json.loads(err.value.body)
    assert body["status"] == "BAD_REFRESH_TOKEN" and body["error"] == "invalid_grant"

    hs_emu.configure(access_token_ttl_seconds=60)
    redirect = "http://localhost/cb"
    auth = httpx.get(f"{hs_emu.url}/oauth/authorize", params={
        "client_id": hs_emu.client_id, "redirect_uri": redirect,
        "scope": "crm.objects.contacts.write", "state": "s1"})
    assert auth.status_code == 302
    code = parse_qs(urlsplit(auth.headers["location"]).query)["code"][0]
    tokens = client.oauth.tokens_api.create(
        grant_type="authorization_code", code=code, redirect_uri=redirect,
        client_id=hs_emu.client_id, client_secret=hs_emu.client_secret)
    assert tokens.expires_in == 60 and tokens.refresh_token


def test_hs_associations_inline_and_v4(hs, hs_emu) -> None:
    contact = hs.crm.contacts.basic_api.create(new_contact(email="assoc@ex.fr"))
    note = hs.crm.objects.notes.basic_api.create(NoteInput(
        properties={"hs_timestamp": "2025-01-01T09:00:00Z", "hs_note_body": "Message"},
        associations=[{"to": {"id": contact.id}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]))
    assert hs_emu.associations("notes", note.id, "contacts") == [int(contact.id)]
    assert hs_emu.associations("contacts", contact.id, "notes") == [int(note.id)]
    with pytest.raises(NotesApiException) as err:  # 194 is call->contact, not note->contact
        hs.crm.objects.notes.basic_api.create(NoteInput(
            properties={"hs_timestamp": "2025-01-01T09:00:00Z"},
            associations=[{"to": {"id": contact.id}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}]))
    assert err.value.status == 400

    call_id = hs_emu.insert("calls", {"hs_timestamp": "2025-01-01T09:05:00Z",
                                      "hs_call_direction": "INBOUND"})
    v4 = hs.crm.associations.v4
    created = v4.basic_api.create_default("calls", call_id, "contacts", contact.id)
    assert created.results[0].association_spec.association_type_id == 194
    page = v4.basic_api.get_page("contacts", contact.id, "calls")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in page.results] == [
        (call_id, 193)]

    meeting = hs_emu.insert("meetings", {"hs_timestamp": "2025-01-02T10:00:00Z"})
    batch = v4.batch_api.create_default("meetings", "contacts",
        BatchInputPublicDefaultAssociationMultiPost(inputs=[
            PublicDefaultAssociationMultiPost(_from=PublicObjectId(id=meeting),
                                              to=PublicObjectId(id=contact.id)),
            PublicDefaultAssociationMultiPost(_from=PublicObjectId(id=meeting),
                                              to=PublicObjectId(id="999999"))]))
    assert batch.num_errors == 1 and len(batch.results) == 1
    assert batch.results[0].association_spec.association_type_id == 200
    read = v4.batch_api.get_page("contacts", "meetings",
        BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=contact.id)]))
    assert read.results[0].to[0].to_object_id == meeting

    fetched = hs.crm.contacts.basic_api.get_by_id(contact.id, associations=["notes", "calls"])
    assert fetched.associations["notes"].results[0].id == note.id
    assert fetched.associations["calls"].results[0].type == "contact_to_call"


# ====================================================================== faults and knobs


def test_fault_5xx_then_recovery(sf, sf_emu, hs, hs_emu) -> None:
    sf_emu.knobs.fail(503, times=2, method="POST", path=r"/sobjects/Lead")
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as err:
            sf.Lead.create({"LastName": "F", "Company": "C"})
        assert err.value.status == 503
        assert err.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    sf.query("SELECT Id FROM Lead")  # not matched by the fault
    assert sf.Lead.create({"LastName": "F", "Company": "C"})["success"] is True
    assert len(sf_emu.records("Lead")) == 1

    hs_emu.knobs.fail(500, body={"status": "error", "message": "boom"},
                      headers={"Retry-After": "1"})
    with pytest.raises(ServiceException) as err:
        hs.crm.contacts.basic_api.get_page()
    assert err.value.status == 500 and json.loads(err.value.body)["message"] == "boom"
    assert err.value.headers["Retry-After"] == "1"
    assert hs.crm.contacts.basic_api.get_page().results == []
    assert hs_emu.knobs.counters()["fault:error"] == 1


def test_latency_knob(hs, hs_emu) -> None:
    hs.crm.contacts.basic_api.get_page()  # warm connection
    hs_emu.knobs.set_latency(300)
    started = time.perf_counter()
    hs.crm.contacts.basic_api.get_page()
    assert time.perf_counter() - started >= 0.3
    httpx.post(f"{hs_emu.url}/__sandbox__/latency", json={"ms": 0})
    started = time.perf_counter()
    hs.crm.contacts.basic_api.get_page()
    assert time.perf_counter() - started < 0.25


def test_sf_write_applied_then_connection_dropped(sf, sf_emu) -> None:
    sf_emu.knobs.drop_after_write(method="POST", path=r"/sobjects/Lead/?$")
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.Lead.create({"LastName": "Ghost", "Company": "C", "Relais_Id__c": "msg-77"})
    rows = sf_emu.find("Lead", Relais_Id__c="msg-77")
    assert len(rows) == 1  # the write landed although the client saw no answer
    # the safe retry is an upsert on the external id: it updates, never duplicates
    assert sf.Lead.upsert("Relais_Id__c/msg-77", {"LastName": "Ghost"}) == 200
    assert len(sf_emu.find("Lead", Relais_Id__c="msg-77")) == 1
    counters = sf_emu.knobs.counters()
    assert counters[f"POST {V}/sobjects/Lead/"] == 1
    assert counters[f"PATCH {V}/sobjects/Lead/Relais_Id__c/msg-77"] == 1
    assert counters["fault:drop_after_write"] == 1


def test_sf_hang_past_client_timeout_after_write(sf, sf_emu) -> None:
    sf_emu.knobs.hang(seconds=5, apply=True, method="POST")
    started = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.restful("sobjects/Task", method="POST", json={"Subject": "Slow"}, timeout=0.5)
    assert time.perf_counter() - started < 2
    assert [t["Subject"] for t in sf_emu.records("Task")] == ["Slow"]


def test_hs_write_applied_then_connection_dropped(hs, hs_emu) -> None:
    hs_emu.knobs.drop_after_write(method="POST", path=r"^/crm/v3/objects/contacts$")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        hs.crm.contacts.basic_api.create(new_contact(email="lost@ex.fr"))
    assert len(hs_emu.find("contacts", email="lost@ex.fr")) == 1
    with pytest.raises(ApiException) as err:  # a blind retry is refused, not duplicated
        hs.crm.contacts.basic_api.create(new_contact(email="lost@ex.fr"))
    assert err.value.status == 409

    # SDK quirk: urllib3's default Retry silently replays idempotent methods (PUT)
    contact = hs_emu.find("contacts", email="lost@ex.fr")[0]["id"]
    note = hs_emu.insert("notes", {"hs_timestamp": "2025-01-01T00:00:00Z"})
    hs_emu.knobs.drop_after_write(method="PUT")
    hs.crm.associations.v4.basic_api.create_default("notes", note, "contacts", contact)
    path = f"PUT /crm/v4/objects/notes/{note}/associations/default/contacts/{contact}"
    assert hs_emu.knobs.counters()[path] == 2


def test_counters_and_control_endpoints_over_http(sf, sf_emu, hs_emu) -> None:
    control = httpx.Client(base_url=f"{sf_emu.url}/__sandbox__",
                           verify=ssl.create_default_context(cafile=str(sf_emu.ca_file)),
                           trust_env=False)
    assert control.post("/faults", json={"kind": "error", "status": 502, "times": 1,
                                         "method": "GET", "path": "/query"}).status_code == 201
    assert control.post("/faults", json={"kind": "explode"}).status_code == 400
    with pytest.raises(SalesforceGeneralError):
        sf.query("SELECT Id FROM Lead")
    sf.query("SELECT Id FROM Lead")
    sf.Contact.create({"LastName": "Counted"})
    counters = control.get("/counters").json()["counters"]
    assert counters[f"GET {V}/query/"] == 2
    assert counters[f"POST {V}/sobjects/Contact/"] == 1
    assert counters["status:502"] == 1 and counters["status:200"] == 1
    assert counters["sf.api_calls"] == 2  # the injected 502 never reached the API
    assert sf_emu.knobs.calls("GET", f"{V}/query") == 2

    assert control.post("/config", json={"daily_api_limit": 3}).json()["daily_api_limit"] == 3
    assert control.post("/config", json={"nope": 1}).status_code == 400
    now = datetime.fromisoformat(control.post("/clock", json={"advance_seconds": 3600})
                                 .json()["now"])
    assert abs((now - datetime.now(UTC)) - timedelta(hours=1)) < timedelta(seconds=5)
    state = control.get("/state").json()
    assert [c["LastName"] for c in state["records"]["Contact"]] == ["Counted"]
    assert control.get("/records/Contact").json()["records"][0]["LastName"] == "Counted"
    expired = control.post("/sessions/expire", json={}).json()["expired"]
    assert expired >= 1
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Lead")
    assert control.post("/reset", json={"data": True}).json() == {"reset": True}
    assert control.get("/counters").json() == {"counters": {}, "total": 0}
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0  # credentials valid again
    control.close()

    hs_control = httpx.Client(base_url=f"{hs_emu.url}/__sandbox__")
    hs_control.post("/faults", json={"faults": [{"kind": "drop_before", "path": "^/crm"}]})
    assert [f["kind"] for f in hs_control.get("/faults").json()["faults"]] == ["drop_before"]
    assert hs_control.delete("/faults").json() == {"faults": []}
    token = hs_control.post("/tokens", json={"ttl": 1}).json()["access_token"]
    hs_emu.clock.advance(2)
    with pytest.raises(ContactsUnauthorized):
        hubspot_client(hs_emu, token).crm.contacts.basic_api.get_page()
    hs_control.close()


def test_python_m_sandbox_runs_in_the_foreground(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--json", "--seed", "--tls-dir", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            assert line, "sandbox exited early"
            lines.append(line)
            if line.rstrip() == "}":
                break
        info = json.loads("".join(lines))
        assert info["ca_file"] == str(tmp_path / "sandbox-ca.pem")
        sf_info, hs_info = info["salesforce"], info["hubspot"]
        client = httpx.Client(verify=ssl.create_default_context(cafile=info["ca_file"]),
                              trust_env=False)
        versions = client.get(f"{sf_info['url']}/services/data/").json()
        assert versions[-1]["version"] == "59.0"
        rows = client.get(f"{sf_info['url']}/__sandbox__/records/Contact").json()["records"]
        assert [r["LastName"] for r in rows] == ["Durand"]
        page = client.get(f"{hs_info['url']}/crm/v3/objects/contacts", headers={
            "Authorization": f"Bearer {hs_info['private_app_token']}"})
        assert page.status_code == 200
        assert page.json()["results"][0]["properties"]["email"] == "jeanne.martin@example.fr"
        client.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
