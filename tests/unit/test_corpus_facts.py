"""The shipped corpus carries the public facts from shared/policy_facts.md, in the documents of the
right region, and never a figure for Karamay's 80–89 age bracket."""

from __future__ import annotations

import re

import pytest

from assistant.core.settings import Settings
from knowledge_base.benefits import BenefitTable
from knowledge_base.loaders import iter_corpus

DOCS = {d.meta.doc_id: d for d in iter_corpus(Settings().corpus_dirs)}

FACTS = [
    ("kmy-elderly-allowance", ["70至79周岁", "100", "90至99周岁", "500", "100周岁及以上", "800"]),
    ("kmy-senior-care-circle", ["15分钟养老服务圈", "23个", "78个"]),
    ("kmy-legal-cost-insurance", ["法律费用保险", "法律援助中心", "1350万元", "9万", "第七届"]),
    ("kmy-hospital-ultrasound", ["1.65天", "半天"]),
    ("kmy-old-district-renovation", ["102个", "2859", "79997"]),
    ("kmy-wellbeing-projects", ["十件"]),
    ("kmy-xiaoke-assistant", ["125个", "全岗通"]),
    ("yq-day-care-centres", ["86个", "305个"]),
    ("yq-medins-integration", ["121万", "98%"]),
    ("yq-two-diseases", ["高血压", "糖尿病"]),
    ("yq-poverty-alleviation", ["2.7万", "130个", "9721元", "3.4倍"]),
    ("hz-yangliujun-health-station", ["云诊室", "邵逸夫", "24小时"]),
    ("hz-volunteer-station", ["20类"]),
    ("cq-employment-circle", ["15分钟就业服务圈"]),
    ("cq-occupational-injury-pilot", ["外卖骑手", "快递员"]),
    ("cq-five-in-one-elderly", ["五位一体"]),
    ("cq-home-modification", ["防滑", "扶手"]),
    ("cq-rare-disease", ["2000万", "20万", "70%"]),
    ("cq-liangjiang-life-circle", ["2024年7月29日", "60%", "45个", "95%", "星家桥"]),
    ("nat-emergency-numbers", ["110", "120", "119", "12345", "12348"]),
]


@pytest.mark.parametrize(("doc_id", "needles"), FACTS)
def test_public_facts_are_carried(doc_id, needles):
    body = DOCS[doc_id].body
    missing = [n for n in needles if n not in body]
    assert not missing, f"{doc_id} lacks {missing}"


@pytest.mark.parametrize(
    "procedure",
    ["nat-medins-resident-enrolment", "nat-medins-chronic-outpatient", "nat-employment-unemployment-registration",
     "nat-employment-unemployment-insurance", "nat-pension-certification", "nat-elderly-allowance-apply",
     "nat-disability-two-subsidies", "nat-dibao-application", "nat-legal-aid-apply"],
)
def test_national_procedures_explain_who_what_where(procedure):
    headings = re.findall(r"^##\s+(.+)$", DOCS[procedure].body, re.MULTILINE)
    joined = " ".join(headings)
    assert "谁" in joined or "条件" in joined, headings
    assert "材料" in joined, headings
    assert "哪里" in joined or "怎么" in joined, headings


def test_mediation_explains_how_to_ask_and_what_an_agreement_means():
    headings = re.findall(r"^##\s+(.+)$", DOCS["nat-mediation-people"].body, re.MULTILINE)
    assert any("怎么" in h for h in headings) and any("协议" in h for h in headings)


def test_karamay_80_to_89_amount_is_not_invented():
    for doc_id in ("kmy-elderly-allowance", "kmy-elderly-allowance-en"):
        doc = DOCS[doc_id]
        tables = BenefitTable.from_meta(doc.meta)
        assert tables and all(t.lookup(85) is None for t in tables)
        for line in doc.body.splitlines():
            if "80至89" in line or "80 to 89" in line:
                assert not re.search(r"\d+\s*(元|yuan)", line), line


def test_every_document_names_source_and_region():
    assert len(DOCS) >= 75
    for doc in DOCS.values():
        assert doc.meta.source and doc.meta.region in {"national", "karamay", "yangquan", "hangzhou", "chongqing"}


def test_benefit_table_matches_the_markdown_table():
    doc = DOCS["kmy-elderly-allowance"]
    rows = dict(re.findall(r"^\|\s*(\d+)[^|]*\|\s*(\d+)\s*\|$", doc.body, re.MULTILINE))
    table = BenefitTable.from_meta(doc.meta)[0]
    assert {str(b.min): f"{b.amount:g}" for b in table.brackets} == rows
