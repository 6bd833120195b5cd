"""WeChat cloud functions unchanged: `require('wx-server-sdk')` gets the platform's, over frazil's
data tables and calls between functions, against a real server and real sandboxes."""
from __future__ import annotations

import json
import secrets

import httpx

from tests.e2e.test_access import end_user


def invoke(server, name: str, token: str, event: dict) -> httpx.Response:
    """A sync call by an end user, with their token."""
    return httpx.post(f"{server.url}/v1/functions/{name}/invoke", json=event,
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)

PACKAGE_JSON = json.dumps({"name": "scores", "dependencies": {"wx-server-sdk": "~2.6.3"}})

# Written in the style of a WeChat cloud function (not copied from one).
SCORES = r"""
const cloud = require('wx-server-sdk');
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
const db = cloud.database();
const _ = db.command;

exports.main = async (event, context) => {
  const { OPENID, ENV } = cloud.getWXContext();
  const scores = db.collection(event.collection);
  const added = [];
  for (const score of [5, 1, 9, 3]) {
    added.push(await scores.add({ data: { _openid: OPENID, score, tags: [] } }));
  }
  const high = await scores.where({ score: _.gt(2) }).orderBy('score', 'desc').limit(2).get();
  const updated = await scores.where({ score: _.gte(5) }).update({ data: { score: _.inc(10), tags: _.push('top') } });
  const counted = await scores.where({ _openid: OPENID, score: _.gt(10) }).count();
  const first = await scores.doc(added[0]._id).get();
  const projected = await scores.where({ score: _.lt(4).and(_.gte(1)) }).field({ score: true }).orderBy('score', 'asc').get();
  const some = await scores.where({ score: _.in([1, 3]) }).skip(1).get();
  let missing = null;
  try {
    await scores.doc('no-such-doc').get();
  } catch (err) {
    missing = { errCode: err.errCode, errMsg: err.errMsg };
  }
  const removed = await scores.doc(added[1]._id).remove();
  const set = await scores.doc(OPENID).set({ data: { nickname: 'me' } });
  const total = await scores.count();
  return { OPENID, ENV, added: added.map((a) => a.errMsg), high, updated, counted, first, projected,
           some: some.data.map((d) => d.score), missing, removed, set, total };
};
"""

# A copy of the SDK bundled in node_modules, which the platform must not load.
BUNDLED_COPY = "module.exports = { init() {}, database() { throw new Error('the bundled copy was loaded'); } };\n"


def test_wechat_database_and_context_for_an_end_user(server, unique_name):
    """add, where with _.gt, update with _.inc, count, orderBy, limit, doc get/remove/set and
    getWXContext, invoked by an end user; the bundled wx-server-sdk is replaced, and the
    build log says so."""
    files = {"index.js": SCORES, "package.json": PACKAGE_JSON,
             "node_modules/wx-server-sdk/index.js": BUNDLED_COPY,
             "node_modules/wx-server-sdk/package.json": json.dumps({"name": "wx-server-sdk", "main": "index.js"})}
    deployed = server.deploy(unique_name, files, access="user").json()
    assert "wx-server-sdk: the platform provides it" in deployed["build_log"]
    assert "node_modules/wx-server-sdk in the bundle" in deployed["build_log"]
    user = end_user(server)
    collection = f"userScores{secrets.token_hex(3)}"  # camelCase, as WeChat code names them
    response = invoke(server, unique_name, user["token"], event={"collection": collection})
    body = response.json()
    assert body["success"], body
    out = body["result"]
    assert out["OPENID"] == user["id"] and out["ENV"] == "frazil"
    assert out["added"] == ["collection.add:ok"] * 4
    assert out["high"]["errMsg"] == "collection.get:ok"
    assert [d["score"] for d in out["high"]["data"]] == [9, 5]
    assert all(set(d) == {"_id", "_openid", "score", "tags"} for d in out["high"]["data"])
    assert out["updated"] == {"stats": {"updated": 2}, "errMsg": "collection.update:ok"}
    assert out["counted"] == {"total": 2, "errMsg": "collection.count:ok"}
    first = out["first"]
    assert first["errMsg"] == "document.get:ok"
    assert (first["data"]["score"], first["data"]["tags"], first["data"]["_openid"]) == (15, ["top"], user["id"])
    assert [d for d in out["projected"]["data"]] == [{"_id": d["_id"], "score": s}
                                                      for d, s in zip(out["projected"]["data"], [1, 3])]
    assert out["some"] == [3]
    assert out["missing"]["errCode"] == -502004 and out["missing"]["errMsg"].startswith("document.get:fail")
    assert out["removed"] == {"stats": {"removed": 1}, "errMsg": "document.remove:ok"}
    assert out["set"] == {"_id": user["id"], "stats": {"updated": 0, "created": 1}, "errMsg": "document.set:ok"}
    assert out["total"] == {"total": 4, "errMsg": "collection.count:ok"}
    # The documents are frazil records: the admin reads them over HTTP.
    rows = server.client().get(f"/v1/tables/{collection}/records", params={"where": json.dumps({"score": {"gt": 10}})})
    assert sorted(r["score"] for r in rows.json()["records"]) == [15, 19]


CALLEE = r"""
const cloud = require('wx-server-sdk');
cloud.init();
exports.main = async (event) => {
  if (event.fail) throw new Error('asked to fail');
  return { doubled: event.x * 2, openid: cloud.getWXContext().OPENID };
};
"""

CALLER = r"""
const cloud = require('wx-server-sdk');
cloud.init({ env: 'prod-1' });
exports.main = async (event) => {
  const ok = await cloud.callFunction({ name: event.callee, data: { x: 21 } });
  let failed = null;
  try {
    await cloud.callFunction({ name: event.callee, data: { fail: true } });
  } catch (err) {
    failed = { errCode: err.errCode, errMsg: err.errMsg };
  }
  let unsupported = null;
  try {
    await cloud.uploadFile({ cloudPath: 'a.png', fileContent: Buffer.from('x') });
  } catch (err) {
    unsupported = err.errMsg;
  }
  return { ok, failed, unsupported, env: cloud.getWXContext().ENV };
};
"""


def test_call_function_between_wechat_functions(server, unique_name):
    """cloud.callFunction answers {result, errMsg, requestID}; the end user carries over; a failing
    callee rejects with errCode -404011; what frazil lacks fails at once, clearly."""
    callee, caller = f"{unique_name}-callee", f"{unique_name}-caller"
    server.deploy(callee, {"index.js": CALLEE, "package.json": PACKAGE_JSON})
    server.deploy(caller, {"index.js": CALLER}, access="user")
    user = end_user(server)
    body = invoke(server, caller, user["token"], event={"callee": callee}).json()
    assert body["success"], body
    out = body["result"]
    assert out["ok"]["result"] == {"doubled": 42, "openid": user["id"]}
    assert out["ok"]["errMsg"] == "cloud.callFunction:ok" and out["ok"]["requestID"]
    assert out["failed"]["errCode"] == -404011 and "asked to fail" in out["failed"]["errMsg"]
    assert out["unsupported"].startswith("cloud.uploadFile:fail") and "not provided by frazil" in out["unsupported"]
    assert out["env"] == "prod-1"
