"""Evidence bundles: the answer to "give us the records of system X for these 48 hours".

    from otel_ai_audit.evidence import BundleRequest, Window, build_bundle, verify_bundle

    bundle = build_bundle(BundleRequest(store="audit.db", system="triage-assist",
                                        window=Window.parse(t1, t2), out=Path("bundle"),
                                        signing_key=SigningKey.load("bundle.key.pem")))
    check = verify_bundle("bundle", trusted_keys)   # offline, from the files alone

Needs the `ml` extra (pandas, scipy, jinja2, matplotlib, fpdf2).
"""

from otel_ai_audit.evidence.build import Bundle, BundleError, BundleRequest, build_bundle
from otel_ai_audit.evidence.verify import BundleCheck, verify_bundle
from otel_ai_audit.evidence.window import Window, WindowError

__all__ = ["Bundle", "BundleCheck", "BundleError", "BundleRequest", "Window", "WindowError",
           "build_bundle", "verify_bundle"]
