"""Helm's own lint and template over the chart, and the rendered manifests checked against the
Kubernetes schemas: the chart tests' renderer (cluster-tests/tests/cluster/helm.rs and
statefulset.rs run it).

    python chart.py CHART_DIR VALUES_JSON [--name N] [--namespace NS] [--kube-version V] [--upgrade]

Prints one JSON object: `lint` (Helm's report, strict), `manifests` (every rendered document,
parsed), `notes` (NOTES.txt rendered), `invalid` (schema violations, one string each), and
`error` when Helm refuses the values (schema or a template's `fail`). Needs helm-python-sdk
(Helm's library, no helm binary) and kubernetes-validate (offline schemas).
"""

import argparse
import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml

# Resources of CRDs the Kubernetes schemas do not carry: the fields the operator requires.
CRD_REQUIRED = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): [("spec", "selector"), ("spec", "endpoints")],
}


def check_crd(doc: dict) -> list[str]:
    required = CRD_REQUIRED.get((doc.get("apiVersion"), doc.get("kind")))
    if required is None:
        return [f"{doc.get('kind')} {doc.get('apiVersion')}: no schema to check it against"]
    problems = []
    for path in required:
        node = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if not node:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(path)} is required")
    return problems


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("chart")
    p.add_argument("values", help="the values, as JSON")
    p.add_argument("--name", default="firn")
    p.add_argument("--namespace", default="default")
    p.add_argument("--kube-version", default="1.30.0")
    p.add_argument("--upgrade", action="store_true", help="render as `helm upgrade` does, not as an install")
    args = p.parse_args()
    values = json.loads(args.values)

    out: dict = {"lint": helm.lint(args.chart, values, strict=True, namespace=args.namespace, kube_version=f"v{args.kube_version}")}
    chart = helm.Chart.load(args.chart)
    try:
        rendered = chart.render(
            values=values, name=args.name, namespace=args.namespace, is_install=not args.upgrade, is_upgrade=args.upgrade
        )
    except helm.HelmError as e:
        out["error"] = str(e)
        print(json.dumps(out))
        return
    manifests, invalid = [], []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            out["notes"] = text
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            doc["__source"] = path
            manifests.append(doc)
            check = {k: v for k, v in doc.items() if k != "__source"}
            try:
                kubernetes_validate.validate(check, args.kube_version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                invalid += check_crd(check)
            except kubernetes_validate.ValidationError as e:
                invalid.append(f"{check['kind']}/{check['metadata']['name']}: {e.message} at {list(e.path)}")
    out["manifests"] = manifests
    out["invalid"] = invalid
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
