"""``spidrkit units``: units files in the formats other toolkits read.

    spidrkit units export UNITS.txt --format km -o DIR [--manifest M] [--name train] [--dedup] [--k K]

writes ``DIR/NAME.tsv`` (fairseq manifest), ``DIR/NAME.km`` (one line of units per utterance, in the
manifest's order) and ``DIR/dict.km.txt`` (``docs/formats.md``, "fairseq units").
"""

from __future__ import annotations

import argparse

from spidrkit.cli.flags import add_output
from spidrkit.extraction.unit_exports import EXPORT_FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = sub.add_parser("export", help="write a units file as fairseq .km + .tsv + dict.km.txt",
                            description="A units file of 'spidrkit extract --units' as fairseq label files.",
                            epilog="example: spidrkit units export features/units.txt --format km -o fairseq/")
    export.add_argument("units", metavar="UNITS", help="units file (units.txt or units.jsonl of spidrkit extract)")
    export.add_argument("--format", dest="fmt", choices=EXPORT_FORMATS, default="km", help="output format")
    add_output(export, "DIR", "output folder", required=True)
    export.add_argument("--manifest", default=None, metavar="MANIFEST_OR_DIR",
                        help="what the units were extracted from (default: the inputs named by UNITS's sidecar)")
    export.add_argument("--name", default="train", help="split name: NAME.tsv and NAME.km (default: train)")
    export.add_argument("--dedup", action="store_true", help="collapse runs of repeated units")
    export.add_argument("--k", type=int, default=None, help="number of units (default: the sidecar's k)")
    export.add_argument("--force", action="store_true", help="replace existing NAME.tsv / NAME.km / dict.km.txt")


def run(args: argparse.Namespace) -> int:
    from spidrkit.extraction.unit_exports import export_km
    from spidrkit.io import check_output_dir

    check_output_dir(args.output, "-o")
    # export_km refuses existing NAME.tsv / NAME.km before it reads anything, unless --force
    paths = export_km(args.units, args.output, args.manifest, args.name, args.dedup, args.k, force=args.force)
    lines = paths["km"].read_text().count("\n")
    print(f"wrote {paths['tsv']}, {paths['km']} ({lines} utterances) and {paths['dict']}")
    return 0
