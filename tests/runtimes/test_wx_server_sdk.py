"""How frazil's wx-server-sdk turns WeChat queries and updates into frazil filters and atomic ops
(the module run by Node, outside the platform: no call is made)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import frazil.runtimes

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
MODULE = Path(frazil.runtimes.__file__).parent / "node" / "wx-server-sdk" / "index.js"


def translate(script: str):
    """Run `script` with `cloud`, `db`, `_` and `t` (the translators) bound; answers its JSON output."""
    program = (f"const cloud = require({json.dumps(str(MODULE))}); const db = cloud.database(); const _ = db.command;"
               f"const t = cloud._translate; const out = (() => {{ {script} }})();"
               "process.stdout.write(JSON.stringify(out));")
    done = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class TestWhere:
    def test_operators_nested_fields_and_id(self):
        """Commands become frazil operators; nested objects become dotted paths; _id is id."""
        assert translate("return t.toWhere({_id: 'x', score: _.gt(1).and(_.lte(5)), tag: _.in(['a']), "
                         "style: {color: 'red'}, gone: _.exists(false), n: _.nin([1]), m: _.neq(2)});") == {
            "id": {"eq": "x"}, "score": {"gt": 1, "lte": 5}, "tag": {"in": ["a"]}, "style.color": {"eq": "red"},
            "gone": {"exists": False}, "n": {"nin": [1]}, "m": {"ne": 2}}

    def test_and_of_conditions_merges_or_of_equalities_becomes_in(self):
        assert translate("return t.toWhere(_.and([{a: 1}, {b: _.lt(3)}]));") == {"a": {"eq": 1}, "b": {"lt": 3}}
        assert translate("return t.toWhere({a: _.eq(1).or(_.eq(2))});") == {"a": {"in": [1, 2]}}
        assert translate("return t.toWhere({a: _.or([_.eq(1), _.in([3, 4])])});") == {"a": {"in": [1, 3, 4]}}

    def test_an_or_frazil_cannot_express_is_refused(self):
        """Never guessed: refused with errCode -501009."""
        out = translate("try { t.toWhere(_.or([{a: 1}, {b: 2}])); return 'guessed'; }"
                        " catch (e) { return [e.errCode, e.errMsg]; }")
        assert out[0] == -501009 and "OR" in out[1]
        out = translate("try { t.toWhere({a: _.gt(1).or(_.lt(0))}); return 'guessed'; }"
                        " catch (e) { return [e.errCode, e.errMsg]; }")
        assert out[0] == -501009


    def test_an_undefined_condition_is_refused_not_dropped(self):
        """where({_openid: undefined}) (no end user called) must not match every document."""
        out = translate("try { t.toWhere({_openid: undefined}); return 'dropped'; }"
                        " catch (e) { return [e.errCode, e.errMsg]; }")
        assert out[0] == -501007 and "_openid is undefined" in out[1]


class TestUpdate:
    def test_commands_become_atomic_ops(self):
        out = translate("return t.toUpdate({n: _.inc(2), tags: _.push('x'), more: _.push({each: [1, 2]}), "
                        "old: _.remove(), style: _.set({c: 1}), name: 'a', when: new Date(0)}, 'document.update');")
        assert out == {"patch": {"style": {"c": 1}, "name": "a", "when": "1970-01-01T00:00:00.000Z"},
                       "ops": {"n": {"inc": 2}, "tags": {"push": ["x"]}, "more": {"push": [1, 2]},
                               "old": {"remove": True}}}

    @pytest.mark.parametrize("data, code", [("{_id: 'x'}", -501007), ("{'a.b': 1}", -501009), ("{}", -501007)])
    def test_refused(self, data, code):
        out = translate(f"try {{ t.toUpdate({data}, 'document.update'); return 'taken'; }}"
                        " catch (e) { return [e.errCode, e.errMsg]; }")
        assert out[0] == code and out[1].startswith("document.update:fail")


def test_field_projection():
    doc = "{_id: 'i', a: 1, b: 2, c: 3}"
    assert translate(f"return t.project({doc}, {{a: true}});") == {"_id": "i", "a": 1}
    assert translate(f"return t.project({doc}, {{a: true, _id: false}});") == {"a": 1}
    assert translate(f"return t.project({doc}, {{b: false}});") == {"_id": "i", "a": 1, "c": 3}


def test_a_whole_collection_is_changed_only_through_where():
    """collection.update()/remove() without where() reject before any call, as in WeChat."""
    script = ("const c = db.collection('x');"
              "Promise.allSettled([c.remove(), c.update({data: {a: 1}})]).then((r) => "
              "process.stdout.write(JSON.stringify(r.map((x) => x.reason.errMsg))));")
    done = subprocess.run(["node", "-e", f"const cloud = require({json.dumps(str(MODULE))}); const db = cloud.database();"
                           + script], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout) == ["collection.remove:fail call where() first (where({}) for every document)",
                                       "collection.update:fail call where() first (where({}) for every document)"]
