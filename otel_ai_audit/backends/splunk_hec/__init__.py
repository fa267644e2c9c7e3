"""Splunk as a place of the trail, through the HTTP Event Collector: `layout` (sourcetypes and
events), `client` (HEC requests, authentication, TLS, HEC's answer codes), `sink` (batches and
indexer acknowledgement) and `source` (verifying a Splunk export). No extra: HEC is spoken
over urllib3, which the core has."""
