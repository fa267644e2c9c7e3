"""What Kibana would ask Elasticsearch for, rebuilt from the saved objects and rule bodies.

Kibana cannot run here, so the tests read the generated artifacts (never the Python specs they
come from) and translate them as Kibana does: a Lens layer's columns into nested aggregations
(buckets outermost first, in `columnOrder`; metrics innermost), its KQL into query DSL, and a
rule's params into the search its executor runs and the threshold it compares. The KQL subset
is the one the objects use: `field : value`, `and`, `or`, `not`, parentheses.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from typing import Any

from elasticsearch import Elasticsearch

_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|([^\s():"]+)|(:))')
_METRICS = {"average": "avg", "max": "max", "min": "min", "sum": "sum"}
COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def kql(text: str) -> dict[str, Any]:
    """Query DSL for a KQL expression of the subset (empty: everything)."""
    tokens = [next(group for group in match.groups() if group is not None)
              for match in _TOKEN.finditer(text) if match.group().strip()]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s", "", text):
        raise ValueError(f"KQL outside the supported subset: {text!r}")
    if not tokens:
        return {"match_all": {}}
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal position
        token = peek()
        if token is None or (expected is not None and token.lower() != expected):
            raise ValueError(f"KQL {text!r}: expected {expected or 'a term'} at {token!r}")
        position += 1
        return token

    def disjunction() -> dict[str, Any]:
        parts = [conjunction()]
        while (peek() or "").lower() == "or":
            take("or")
            parts.append(conjunction())
        return parts[0] if len(parts) == 1 else {
            "bool": {"should": parts, "minimum_should_match": 1}}

    def conjunction() -> dict[str, Any]:
        parts = [negation()]
        while (peek() or "").lower() == "and":
            take("and")
            parts.append(negation())
        return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}

    def negation() -> dict[str, Any]:
        if (peek() or "").lower() == "not":
            take("not")
            return {"bool": {"must_not": [negation()]}}
        if peek() == "(":
            take("(")
            inner = disjunction()
            take(")")
            return inner
        field = take()
        take(":")
        value = take()
        if value.startswith('"'):
            value = json.loads(value)
        return {"match": {field: value}}

    query = disjunction()
    if position != len(tokens):
        raise ValueError(f"KQL {text!r}: unexpected {tokens[position]!r}")
    return query


def lens_layer(lens: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one formBased layer of a Lens object: (layer id, layer)."""
    layers = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    (layer_id, layer), = layers.items()
    return layer_id, layer


def layer_data_view(lens: dict[str, Any]) -> str:
    """The id of the data view the Lens layer reads (its reference, as Kibana resolves it)."""
    layer_id, _ = lens_layer(lens)
    (view,) = [ref["id"] for ref in lens["references"]
               if ref["name"] == f"indexpattern-datasource-layer-{layer_id}"]
    return view


def lens_search(lens: dict[str, Any], data_view: dict[str, Any],
                time_from: str = "now-7d") -> tuple[str, dict[str, Any], list[str]]:
    """(index, search body, bucket column ids) for a Lens panel over the dashboard's time."""
    _, layer = lens_layer(lens)
    columns = layer["columns"]
    order = layer["columnOrder"]
    buckets = [i for i in order if columns[i]["isBucketed"]]
    metrics = [i for i in order if not columns[i]["isBucketed"]]
    innermost: dict[str, Any] = {}
    for column_id in metrics:
        column = columns[column_id]
        if column["operationType"] != "count":
            kind = _METRICS[column["operationType"]]
            innermost[column_id] = {kind: {"field": column["sourceField"]}}
    aggs = innermost
    for column_id in reversed(buckets):
        column = columns[column_id]
        if column["operationType"] == "date_histogram":
            bucket: dict[str, Any] = {"date_histogram": {
                "field": column["sourceField"], "fixed_interval": "1h"}}
        else:
            params = column["params"]
            terms: dict[str, Any] = {"field": column["sourceField"], "size": params["size"]}
            ordered = params["orderBy"].get("columnId")
            bucket = {"terms": terms}
            if ordered and ordered in innermost:
                # Lens orders by a metric computed at this level (its "orderAgg").
                terms["order"] = {ordered: params["orderDirection"]}
                aggs = {**aggs, ordered: innermost[ordered]}
            elif ordered:
                terms["order"] = {"_count": params["orderDirection"]}
        if aggs:
            bucket["aggs"] = aggs
        aggs = {column_id: bucket}
    time_field = data_view["attributes"]["timeFieldName"]
    query = {"bool": {"filter": [
        kql(lens["attributes"]["state"]["query"]["query"]),
        {"range": {time_field: {"gte": time_from, "lte": "now"}}}]}}
    return data_view["attributes"]["title"], {"size": 0, "query": query, "aggs": aggs}, buckets


def lens_rows(client: Elasticsearch, lens: dict[str, Any],
              data_view: dict[str, Any]) -> list[dict[str, Any]]:
    """The table Lens would draw: one row per innermost bucket, {column id: value}."""
    index, body, buckets = lens_search(lens, data_view)
    client.indices.refresh(index=index)
    response = client.search(index=index, **body)
    _, layer = lens_layer(lens)
    columns = layer["columns"]
    metrics = [i for i in layer["columnOrder"] if not columns[i]["isBucketed"]]

    def rows_of(node: dict[str, Any], depth: int, row: dict[str, Any]) -> list[dict[str, Any]]:
        if depth == len(buckets):
            leaf = dict(row)
            for column_id in metrics:
                leaf[column_id] = (node["doc_count"] if columns[column_id]["operationType"]
                                   == "count" else node[column_id]["value"])
            return [leaf] if node["doc_count"] else []  # Lens drops empty buckets
        found = []
        for bucket in node[buckets[depth]]["buckets"]:
            found += rows_of(bucket, depth + 1,
                             {**row, buckets[depth]: bucket.get("key_as_string",
                                                                bucket["key"])})
        return found

    root = {**response.get("aggregations", {}), "doc_count": response["hits"]["total"]["value"]}
    return rows_of(root, 0, {})


def rule_outcome(client: Elasticsearch, body: dict[str, Any]) -> dict[str, float]:
    """What the rule's executor would compute now: {group: value} of the groups whose value
    meets the condition (".es-query": the one group "all", the hit count)."""
    params = body["params"]
    window = f"now-{params['timeWindowSize']}{params['timeWindowUnit']}"
    time_range = {"range": {params["timeField"]: {"gte": window, "lte": "now"}}}
    compare = COMPARATORS[params["thresholdComparator"]]
    threshold = params["threshold"][0]
    (index,) = params["index"]
    client.indices.refresh(index=index)
    if body["rule_type_id"] == ".es-query":
        query = json.loads(params["esQuery"])["query"]
        response = client.search(index=index, size=0, track_total_hits=True,
                                 query={"bool": {"filter": [query, time_range]}})
        count = response["hits"]["total"]["value"]
        return {"all": count} if compare(count, threshold) else {}
    assert body["rule_type_id"] == ".index-threshold"
    aggregate = params["aggType"]
    metric = ({} if aggregate == "count"
              else {"metric": {aggregate: {"field": params["aggField"]}}})
    groups = ({"terms": {"field": params["termField"], "size": params["termSize"]}}
              if params["groupBy"] == "top" else {"filter": {"match_all": {}}})
    response = client.search(
        index=index, size=0,
        query={"bool": {"filter": [kql(params.get("filterKuery") or ""), time_range]}},
        aggs={"groups": {**groups, "aggs": metric} if metric else groups})
    found = response["aggregations"]["groups"]
    buckets = found["buckets"] if params["groupBy"] == "top" else [{"key": "all", **found}]
    values = {bucket["key"]: bucket["metric"]["value"] if metric else bucket["doc_count"]
              for bucket in buckets}
    return {key: value for key, value in values.items()
            if value is not None and compare(value, threshold)}
