#!/usr/bin/env python3
"""A POS-style client of rvc-catalog: generates Python code from proto/catalog.proto and
proto/recognition.proto with grpcio-tools (scripts/setup-pos-client.sh installs it in .venv) and
calls rvc.catalog.v1.ProductService (or RecognitionService with --recognize).

    .venv/bin/python scripts/pos-client.py --addr 127.0.0.1:8091 <product id> [<product id> ...]
    .venv/bin/python scripts/pos-client.py --sku OAT-1L
    .venv/bin/python scripts/pos-client.py --first 5     # ids from the HTTP listing, then gRPC
    .venv/bin/python scripts/pos-client.py --recognize photo.jpg

Every call sends an API key (gRPC metadata `authorization: Bearer <key>`; the HTTP listing the
same header): --key, else the RVC_API_KEY environment variable, else the file var/dev-api-key
that `make run` writes. Reads need the `catalog:read` scope, --recognize the `recognize` scope.

Prints one JSON object per product (price in minor units and as a decimal) and the ids the
service did not know (with --recognize: one JSON object per recognised product). Exit code 0 on
success, 2 on a gRPC error (code and message printed).
"""
import argparse
import importlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(out_dir):
    """Compiles proto/catalog.proto into out_dir and imports the generated modules."""
    from grpc_tools import protoc
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    proto_dir = os.path.join(REPO, "proto")
    rc = protoc.main([
        "protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        os.path.join(proto_dir, "catalog.proto"),
        os.path.join(proto_dir, "recognition.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed on proto/catalog.proto, proto/recognition.proto (exit {rc})")
    sys.path.insert(0, out_dir)
    return (importlib.import_module("catalog_pb2"), importlib.import_module("catalog_pb2_grpc"),
            importlib.import_module("recognition_pb2"), importlib.import_module("recognition_pb2_grpc"))


def api_key(given):
    """--key, else $RVC_API_KEY, else var/dev-api-key (written by `make run`)."""
    if given:
        return given.strip()
    if os.environ.get("RVC_API_KEY", "").strip():
        return os.environ["RVC_API_KEY"].strip()
    path = os.path.join(REPO, "var", "dev-api-key")
    try:
        with open(path, encoding="ascii") as f:
            key = f.read().strip()
    except OSError:
        key = ""
    if not key:
        sys.exit("no API key: pass --key, set RVC_API_KEY, or run `make run` (it writes var/dev-api-key)")
    return key


def show(p):
    return {
        "product_id": p.product_id,
        "sku": p.sku,
        "name": p.name,
        "category": p.category,
        "price_minor": p.price_minor,
        "price": f"{p.price_minor / 100:.2f} {p.currency}",
        "status": p.status,
        "archived": p.archived,
        "version": p.version,
        "revision": p.revision,
        "image_keys": list(p.image_keys),
        "updated_at": p.updated_at.ToJsonString() if p.HasField("updated_at") else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ids", nargs="*", help="product ids (UUIDs)")
    ap.add_argument("--addr", default=os.environ.get("GRPC_ADDR", "127.0.0.1:8091"))
    ap.add_argument("--http", default=os.environ.get("CATALOG_HTTP_ADDR", "127.0.0.1:8081"),
                    help="rvc-catalog HTTP address (for --first)")
    ap.add_argument("--sku", help="look one product up by SKU instead")
    ap.add_argument("--first", type=int, help="take the first N product ids from the HTTP listing")
    ap.add_argument("--recognize", metavar="PHOTO", help="recognise the products in a photo instead")
    ap.add_argument("--top-k", type=int, default=0, help="candidates per object with --recognize")
    ap.add_argument("--key", help="API key (default: $RVC_API_KEY, else var/dev-api-key)")
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()

    key = api_key(args.key)
    metadata = (("authorization", f"Bearer {key}"),)

    import grpc

    with tempfile.TemporaryDirectory(prefix="rvc-pos-") as gen:
        pb, pb_grpc, rpb, rpb_grpc = generate(gen)
        with grpc.insecure_channel(args.addr) as channel:
            stub = pb_grpc.ProductServiceStub(channel)
            try:
                if args.recognize:
                    with open(args.recognize, "rb") as f:
                        image = f.read()
                    r = rpb_grpc.RecognitionServiceStub(channel).Recognize(
                        rpb.RecognizeRequest(image=image, top_k=args.top_k),
                        timeout=max(args.timeout, 30.0), metadata=metadata)
                    for o in r.objects:
                        print(json.dumps({
                            "product_id": o.product.product_id, "sku": o.product.sku,
                            "name": o.product.name, "price": f"{o.product.price} {o.product.currency}",
                            "version": o.product.version, "score": round(o.score, 4),
                            "box": {"x": o.box.x, "y": o.box.y, "width": o.box.width, "height": o.box.height},
                        }))
                    print(json.dumps({"model_version": r.model_version, "objects": len(r.objects)}))
                    return 0
                if args.sku:
                    r = stub.GetProductBySku(pb.GetProductBySkuRequest(sku=args.sku), timeout=args.timeout,
                                             metadata=metadata)
                    print(json.dumps(show(r.product)))
                    return 0
                ids = list(args.ids)
                if args.first:
                    url = f"http://{args.http}/api/v1/products?limit={args.first}"
                    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
                    with urllib.request.urlopen(req, timeout=args.timeout) as resp:
                        ids += [item["id"] for item in json.load(resp)["items"]]
                if not ids:
                    ap.error("give product ids, --first N, --sku or --recognize")
                r = stub.GetProductsInfo(pb.GetProductsInfoRequest(product_ids=ids), timeout=args.timeout,
                                         metadata=metadata)
            except grpc.RpcError as e:
                print(f"gRPC error {e.code().name}: {e.details()}", file=sys.stderr)
                return 2
            except urllib.error.HTTPError as e:
                print(f"HTTP error {e.code}: {e.read().decode('utf-8', 'replace')}", file=sys.stderr)
                return 2
            for p in r.products:
                print(json.dumps(show(p)))
            print(json.dumps({"not_found_ids": list(r.not_found_ids)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
