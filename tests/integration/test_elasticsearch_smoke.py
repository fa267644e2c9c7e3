"""The test Elasticsearch is real: index and search a document through the Python client."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from tests.services.elasticsearch import ELASTICSEARCH_VERSION, ElasticsearchService


def test_index_and_search_through_python_client(elasticsearch: ElasticsearchService) -> None:
    client = Elasticsearch(elasticsearch.url, request_timeout=30)
    nodes = client.nodes.info(node_id="_local")
    assert {node["version"] for node in nodes["nodes"].values()} == {ELASTICSEARCH_VERSION}

    client.index(index="smoke", id="decision-1", document={"model": "adult", "score": 0.87},
                 refresh="wait_for")
    hits = client.search(index="smoke", query={"term": {"model.keyword": "adult"}})["hits"]
    assert hits["total"]["value"] == 1
    assert hits["hits"][0]["_id"] == "decision-1"
    assert hits["hits"][0]["_source"]["score"] == 0.87
