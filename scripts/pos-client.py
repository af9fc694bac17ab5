#!/usr/bin/env python3
"""A POS-style client of rvc-catalog: generates Python code from proto/catalog.proto with
grpcio-tools (scripts/setup-pos-client.sh installs it in .venv) and calls
rvc.catalog.v1.ProductService.

    .venv/bin/python scripts/pos-client.py --addr 127.0.0.1:8091 <product id> [<product id> ...]
    .venv/bin/python scripts/pos-client.py --sku OAT-1L
    .venv/bin/python scripts/pos-client.py --first 5     # ids from the HTTP listing, then gRPC

Prints one JSON object per product (price in minor units and as a decimal) and the ids the
service did not know. Exit code 0 on success, 2 on a gRPC error (code and message printed).
"""
import argparse
import importlib
import json
import os
import sys
import tempfile
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
    ])
    if rc != 0:
        sys.exit(f"protoc failed on proto/catalog.proto (exit {rc})")
    sys.path.insert(0, out_dir)
    return importlib.import_module("catalog_pb2"), importlib.import_module("catalog_pb2_grpc")


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
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()

    import grpc

    with tempfile.TemporaryDirectory(prefix="rvc-pos-") as gen:
        pb, pb_grpc = generate(gen)
        with grpc.insecure_channel(args.addr) as channel:
            stub = pb_grpc.ProductServiceStub(channel)
            try:
                if args.sku:
                    r = stub.GetProductBySku(pb.GetProductBySkuRequest(sku=args.sku), timeout=args.timeout)
                    print(json.dumps(show(r.product)))
                    return 0
                ids = list(args.ids)
                if args.first:
                    url = f"http://{args.http}/api/v1/products?limit={args.first}"
                    with urllib.request.urlopen(url, timeout=args.timeout) as resp:
                        ids += [item["id"] for item in json.load(resp)["items"]]
                if not ids:
                    ap.error("give product ids, --first N or --sku")
                r = stub.GetProductsInfo(pb.GetProductsInfoRequest(product_ids=ids), timeout=args.timeout)
            except grpc.RpcError as e:
                print(f"gRPC error {e.code().name}: {e.details()}", file=sys.stderr)
                return 2
            for p in r.products:
                print(json.dumps(show(p)))
            print(json.dumps({"not_found_ids": list(r.not_found_ids)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
