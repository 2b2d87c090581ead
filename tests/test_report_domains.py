"""Many domains stay readable: the N sparsest and N densest domains with enough test users, the
rest pooled with their own CI, all-zero rows dropped, and ▲/▼ exactly where the CI excludes 0."""

from __future__ import annotations

import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from report_fixtures import base_ranks, ndcg10, synthetic_population, write_eval

from components.core.cohorts import Domains
from components.errors import ConfigError
from components.report.cli import build_parser
from components.report.domains_view import OTHER_DENSE, OTHER_SPARSE, domain_view
from components.report.report import report

TOP = 5


def test_domain_view_shows_the_extremes_with_enough_users_and_pools_the_rest():
    names = [f"d{i}" for i in range(12)]
    shares = dict(zip(names, np.linspace(0.01, 0.2, 12), strict=True))
    domains = Domains(names, shares, [])
    sparse = domains.sparse_domains()
    counts = {d: 5 if i % 3 == 0 else 50 for i, d in enumerate(names)}
    counts["d11"] = 0  # no test users: neither shown nor pooled
    view = domain_view(domains, counts, top=2, min_users=20)
    big_sparse = [d for d in sparse if counts[d] >= 20]
    big_dense = [d for d in names if d not in sparse and counts[d] >= 20]
    assert view.sparse == big_sparse[:2]
    assert view.dense == big_dense[-2:]
    assert set(view.other_sparse) == set(sparse) - set(view.sparse) - {"d11"}
    assert "d11" not in view.shown + view.other_sparse + view.other_dense
    assert view.display()[2:4] == [("group", OTHER_SPARSE), ("group", OTHER_DENSE)]
    # a pool of one domain is shown under its own name
    few = domain_view(domains, {"d0": 50, "d1": 5, "d10": 50}, top=2, min_users=20)
    assert few.other_sparse == [] and few.sparse == [d for d in ("d0", "d1") if d in sparse]


def md_table(md: str, title: str) -> list[list[str]]:
    """The cells of the Markdown table under the heading that starts with ``title``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {title}"))
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("| "):
            table.append([c.strip() for c in line.strip("|").split(" | ")])
    return table[2:]  # header and rule


@pytest.fixture(scope="module")
def many_domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    population = synthetic_population(200, 3000, seed=4)
    base = base_ranks(population)
    names = np.array(population["names"])[population["target"]]
    counts = {d: int((names == d).sum()) for d in population["names"]}
    zero = sorted(counts, key=counts.get)[-3]  # a big dense domain every variant scores 0 on
    base = np.where(names == zero, 100, base)
    sparse = population["shares"][population["target"]] < 1 / 200
    better = np.where(sparse, base // 2, base)
    one = base.copy()
    lucky = int(np.flatnonzero((names == sorted(counts, key=counts.get)[-1]) & (base > 20))[0])
    one[lucky] = 0  # one user better: every CI of a cohort holding it touches 0
    ranks = {"none": base, "better": better, "one": one}
    evals = {name: write_eval(root / name, population, r) for name, r in ranks.items()}
    summary = report(evals, root / "rep", bootstrap=200, top_domains=TOP, min_users=10)
    rows = pq.read_table(root / "rep" / "comparison.parquet").to_pylist()
    return root / "rep", summary, rows, names, ranks, zero


def test_tables_and_chart_show_at_most_2n_plus_the_pooled_rows(many_domains):
    out, summary, rows, names, ranks, zero = many_domains
    md = (out / "report.md").read_text()
    for metric in ("ndcg@10", "recall@10"):
        table = md_table(md, f"{metric}: lift vs none")
        domain_rows = [r for r in table if not r[0].startswith("power users")]
        assert len(domain_rows) <= 2 * TOP + 3
        assert domain_rows[0][0] == "overall"
        assert {OTHER_SPARSE, OTHER_DENSE} <= {r[0] for r in domain_rows}
    html = (out / "report.html").read_text()
    bars = html[html.index("ndcg@10 by domain</h2>") :]
    bars = bars[: bars.index("</svg>")]
    assert 0 < bars.count("(n=") <= 2 * TOP + 2
    # the pooled cohort is the union of the other domains' users, with its own CI
    shown = summary["shown_domains"]
    pooled = np.isin(names, shown["other_sparse"])
    row = next(
        r
        for r in rows
        if r["domain"] == OTHER_SPARSE and r["variant"] == "better" and r["metric"] == "ndcg@10"
    )
    assert row["cohort"] == "group" and row["sparse"] is True and row["n"] == pooled.sum()
    base_value = ndcg10(ranks["none"])[pooled].mean()
    assert row["baseline_value"] == pytest.approx(base_value, rel=1e-12)
    assert row["delta_low"] > 0 and row["significant"]
    # the all-zero domain: in comparison.parquet, not in the tables nor the chart
    assert zero in shown["dense"]
    assert any(r["domain"] == zero and r["cohort"] == "domain" for r in rows)
    assert not any(r[0] == zero for r in md_table(md, "ndcg@10: lift vs none"))
    assert f">{zero}" not in bars


def test_arrows_exactly_where_the_ci_excludes_0_in_text_and_tables(many_domains):
    out, summary, rows, *_ = many_domains
    md = (out / "report.md").read_text()
    index = {
        (r["domain"] or "overall", r["variant"]): r
        for r in rows
        if r["metric"] == "ndcg@10" and r["cohort"] != "power"  # power rows are labelled apart
    }
    table = md_table(md, "ndcg@10: lift vs none")
    checked = 0
    for cells in (c for c in table if not c[0].startswith("power users")):
        label = cells[0].removesuffix(" (sparse)")
        for variant, cell in (("better", cells[4]), ("one", cells[6])):
            r = index[(label, variant)]
            up = r["significant"] and r["delta"] > 0
            down = r["significant"] and r["delta"] < 0
            assert ("▲" in cell) == up and ("▼" in cell) == down, (label, variant, cell)
            checked += 1
    assert checked >= 2 * (2 * TOP + 2)  # overall, both pools, all but one domain shown
    # one user better: the CIs touch 0, so nothing is significant, in the table or the text
    overall = index[("overall", "one")]
    assert overall["delta_low"] == 0.0 and overall["delta_high"] > 0
    assert not any(r["significant"] for r in rows if r["variant"] == "one")
    sentence = next(s for s in summary["findings"] if s.startswith("one vs none (ndcg@10)"))
    assert sentence.endswith("(not significant).")
    assert re.search(r"significant gains in 0 of \d+, significant losses in 0;", sentence)
    assert summary["verdicts"]["one"] == "no significant change"
    # the sentence counts what the table flags
    gains = sum(
        1
        for r in rows
        if r["variant"] == "better"
        and r["metric"] == "ndcg@10"
        and r["cohort"] == "domain"
        and r["sparse"]
        and r["significant"]
        and r["delta"] > 0
    )
    better = next(s for s in summary["findings"] if s.startswith("better vs none (ndcg@10)"))
    assert f"significant gains in {gains} of" in better


def test_top_domains_option_is_checked_and_on_the_cli():
    args = build_parser().parse_args(["--eval", "none=d", "--output", "o", "--top-domains", "3"])
    assert args.top_domains == 3
    with pytest.raises(ConfigError, match="--top-domains: must be >= 1"):
        report({"none": "d"}, "o", top_domains=0)
