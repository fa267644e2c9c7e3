"""External anchors: what makes the trail complete against whoever runs the store.

Checkpoints protect each chain against edits, but live beside the records: someone with write
access to the store can put back an old copy, delete a whole chain, or (holding the key)
re-sign a rewritten history. An anchor is a signed statement, published outside the store,
of every chain's latest signed checkpoint:

* `document`: the anchor itself (canonical JSON, Ed25519-signed, chained to the previous
  anchor by hash; the first anchor of each UTC day is flagged `daily`, the digest ledger);
* `timestamp`: an RFC 3161 time-stamp token over it from a time-stamping authority, so its time
  does not rest on our clock or our key;
* `s3`: publication to S3-compatible object storage with Object Lock in compliance mode, so
  nobody (root included) can delete or shorten it before the retention ends;
* `publish`: the anchoring job (the runtime's thread, or `otel-ai-audit anchor` from cron):
  build the next anchor in the store's outbox, time-stamp it, publish it, retry what failed;
* `verify`: read the published anchors back and check the trail against them.
"""
