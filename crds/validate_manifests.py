"""Validates Fjord custom resources against the generated CRD schemas with check-jsonschema.

Every document in deploy/examples/*.yaml must pass: Fjord CRs against the generated CRD schemas,
built-in kinds (Secret, HorizontalPodAutoscaler) with kubernetes-validate --strict, an HPA must
target a kind with a scale subresource, and an Argo CD Application's Helm values must pass the
chart's values.schema.json and its path must exist. And the operator's RBAC in
deploy/operator/ must not touch Nodes or use wildcards; every file in crds/tests/invalid/ must fail,
with the text of its `# expect: ...` header line in check-jsonschema's output. OpenAPI's
`nullable: true` becomes JSON Schema's `type: [T, "null"]`; CEL rules (x-kubernetes-validations)
are not checked here (they need an API server). Run: .venv/bin/python crds/validate_manifests.py
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECK = Path(sys.executable).parent / "check-jsonschema"


def to_json_schema(node):
    if isinstance(node, dict):
        out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    return node


def schemas(tmp: Path) -> dict:
    """kind -> schema file path, from crds/generated/*.yaml."""
    out = {}
    for crd_file in sorted((ROOT / "crds" / "generated").glob("*.yaml")):
        crd = yaml.safe_load(crd_file.read_text())
        for version in crd["spec"]["versions"]:
            schema = to_json_schema(version["schema"]["openAPIV3Schema"])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            api_version = f"{crd['spec']['group']}/{version['name']}"
            path = tmp / f"{crd['spec']['names']['kind']}-{version['name']}.json"
            path.write_text(json.dumps(schema))
            out[(api_version, crd["spec"]["names"]["kind"])] = path
    return out


BUILTIN = {("v1", "Secret"), ("autoscaling/v2", "HorizontalPodAutoscaler")}


def check_other(doc: dict, tmp: Path) -> tuple[bool, str] | None:
    """Kinds that are not Fjord CRs; None if the kind is not one of them."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in BUILTIN:
        path = tmp / "builtin.yaml"
        path.write_text(yaml.safe_dump(doc))
        r = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
                            "--kubernetes-version", "1.33", str(path)], capture_output=True, text=True)
        out = r.stdout + r.stderr
        if r.returncode != 0:
            return False, out
        if doc["kind"] == "HorizontalPodAutoscaler":
            ref = doc["spec"]["scaleTargetRef"]
            crds = [yaml.safe_load(p.read_text()) for p in (ROOT / "crds" / "generated").glob("*.yaml")]
            scalable = [crd for crd in crds if crd["spec"]["names"]["kind"] == ref["kind"]
                        and any("scale" in v.get("subresources", {}) for v in crd["spec"]["versions"])]
            if not scalable:
                return False, f"HPA target {ref['kind']} has no scale subresource"
        return True, out
    if key == ("argoproj.io/v1alpha1", "Application"):
        import jsonschema
        source = doc["spec"]["source"]
        if not (ROOT / source["path"]).is_dir():
            return False, f"Application source path {source['path']} does not exist in the repository"
        values = source.get("helm", {}).get("valuesObject")
        if values is not None:
            schema = json.loads((ROOT / source["path"] / "values.schema.json").read_text())
            try:
                jsonschema.validate(values, schema)
            except jsonschema.ValidationError as e:
                return False, f"Helm values refused by the chart schema: {e.message}"
        return True, ""
    return None


def check(schema_map: dict, doc: dict, tmp: Path, label: str) -> tuple[bool, str]:
    other = check_other(doc, tmp)
    if other is not None:
        return other
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in schema_map:
        return False, f"{label}: no CRD for {key}"
    doc_path = tmp / "doc.json"
    doc_path.write_text(json.dumps(doc))
    r = subprocess.run([str(CHECK), "--schemafile", str(schema_map[key]), str(doc_path)],
                       capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def check_rbac() -> list[str]:
    """The operator's RBAC (deploy/operator/*.yaml) is least privilege: no Node access, no wildcards."""
    problems = []
    for path in sorted((ROOT / "deploy" / "operator").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc.get("kind") not in ("ClusterRole", "Role"):
                continue
            for rule in doc.get("rules", []):
                if "nodes" in rule.get("resources", []):
                    problems.append(f"{path.name} {doc['metadata']['name']}: reads nodes")
                if "*" in rule.get("resources", []) + rule.get("verbs", []) + rule.get("apiGroups", []):
                    problems.append(f"{path.name} {doc['metadata']['name']}: wildcard in {rule}")
    return problems


def main() -> int:
    failures = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        schema_map = schemas(tmp)
        valid = 0
        for path in sorted((ROOT / "deploy" / "examples").glob("*.yaml")):
            for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
                ok, output = check(schema_map, doc, tmp, f"{path.name}#{i}")
                valid += 1
                if not ok:
                    failures.append(f"{path.relative_to(ROOT)} document {i} should be valid:\n{output}")
        invalid = 0
        for path in sorted((ROOT / "crds" / "tests" / "invalid").glob("*.yaml")):
            text = path.read_text()
            expect = text.splitlines()[0].removeprefix("# expect:").strip()
            ok, output = check(schema_map, yaml.safe_load(text), tmp, path.name)
            invalid += 1
            if ok:
                failures.append(f"{path.relative_to(ROOT)} should be refused but passed")
            elif expect not in output:
                failures.append(f"{path.relative_to(ROOT)}: expected {expect!r} in:\n{output}")
        failures.extend(check_rbac())
    for f in failures:
        print(f"FAIL {f}")
    print(f"{valid} example documents valid, {invalid} invalid manifests refused, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
