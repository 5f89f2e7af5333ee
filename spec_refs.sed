# Replace the citations of the background notes (SPEC, BENCHMARKS.md; not in the repository) by the docs.
# Order matters: specific forms first, then the general ones. A citation gets an anchor where the line
# stays within 120 characters, else the docs file alone (the section is then the obvious one).
s|SPEC §2, steps 2 and 4|docs/method.md#codebook-update|g
s|SPEC §2|docs/method.md|g
s|SPEC §1|docs/method.md|g
s|SPEC §3|docs/method.md#masking|g
s|SPEC §4|docs/design.md#pretraining|g
s|SPEC §5|docs/method.md|g
s|in the released layout (SPEC §7)|in the released layout (docs/formats.md#released-layout)|g
s|SPEC §7|docs/formats.md|g
s|SPEC sections 1-4|docs/method.md|g
s|# SPEC: 183.2M|# docs/formats.md#released-layout: 183.2M|g
s|(BENCHMARKS.md)|(docs/design.md#performance)|g
s|# BENCHMARKS.md: |# docs/design.md#performance: |g
