"""What each part of the bundle answers: EU AI Act articles, NIST AI RMF and ISO/IEC 42001
references (see DESIGN.md section 6). One table, used by the HTML and PDF reports and the
manifest, so the mapping is stated once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    key: str
    title: str
    eu_ai_act: str
    standards: str
    files: tuple[str, ...]


ITEMS = (
    Item("decision_log", "Decision log extract",
         "Art. 12(1)-(2) automatic logging; Art. 19(1), 26(6) logs kept and provided; "
         "Art. 21, 74 access on request",
         "ISO/IEC 42001 A.6.2.8 event logs; SOC 2 PI1.5",
         ("decisions.csv", "decisions.jsonl", "decisions-fields.json")),
    Item("timeline", "Model version timeline",
         "Art. 11 + Annex IV(6) changes through the lifecycle; Art. 12(2) substantial "
         "modifications",
         "NIST AI RMF MANAGE 4.1", ("sections/timeline.json",)),
    Item("oversight", "Human oversight",
         "Art. 14 human oversight; Art. 26(2) oversight by the deployer",
         "NIST AI RMF MANAGE 4.1; ISO/IEC 42001 A.9", ("sections/oversight.json",)),
    Item("incidents", "Incident register (and disputes, alerts)",
         "Art. 73 serious incidents: awareness, causal link, 15/10/2-day notification",
         "NIST AI RMF MANAGE 4.3; SOC 2 CC7.2", ("sections/incidents.json",)),
    Item("drift", "Input drift",
         "Art. 72 post-market monitoring; Art. 12(2)(c)",
         "NIST AI RMF MEASURE 2.4; SOC 2 CC7.2", ("sections/drift.json",)),
    Item("performance", "Performance per subgroup",
         "Art. 72 post-market monitoring; Art. 15(3) accuracy over the lifecycle; Art. 10(2)(f)",
         "NIST AI RMF MEASURE 2.4, 3.1", ("sections/performance.json",)),
    Item("lineage", "Data lineage",
         "Art. 10 data governance; Art. 11 + Annex IV(2) development and data",
         "ISO/IEC 42001 A.7.5 data provenance", ("sections/lineage.json",)),
    Item("integrity", "Chain verification, checkpoints, keys, inclusion proofs, completeness",
         "Art. 12 (logs that can be relied on); Art. 19",
         "SOC 2 PI1.5; ISO/IEC 42001 A.6.2.8",
         ("integrity/verification.json", "integrity/checkpoints-*.json",
          "integrity/tail-*.json", "integrity/bounds-*.json", "integrity/consistency-*.json",
          "integrity/foreign-*.json", "integrity/chain-*.jsonl", "integrity/proofs/*.json",
          "anchors/*.json", "keys/*.pem")),
    Item("manifest", "Signed manifest (SHA-256 of every file)",
         "Art. 21, 74 documentation and logs handed over on request",
         "SOC 2 PI1.5", ("manifest.json", "manifest.sig", "keys/bundle-signer.pub.pem")),
)
