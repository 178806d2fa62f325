from assistant.core.settings import Settings
from knowledge_base.text import (
    detect_language,
    load_lexicon,
    normalize_query,
    split_sentences,
    tokenize,
)

S = Settings()
LEX = load_lexicon(S.domain_terms, S.synonyms)


def test_full_width_and_traditional_are_normalised():
    normalized, _ = normalize_query("養老金資格認證怎麼辦？ＡＢＣ１２３", LEX)
    assert "养老金资格认证" in normalized
    assert "ABC123" in normalized


def test_colloquial_synonyms_map_to_document_terms():
    normalized, lexical = normalize_query("我的退休金咋还没到", LEX)
    assert "养老金" in normalized
    normalized, lexical = normalize_query("高龄补贴怎么领", LEX)
    assert "高龄津贴" in normalized
    assert "高龄补贴" in lexical  # the resident's own words are kept for BM25


def test_homophone_typos_of_domain_terms_are_repaired():
    normalized, _ = normalize_query("俺想申请底保", LEX)
    assert "低保" in normalized
    assert "底保" not in normalized


def test_repair_leaves_ordinary_text_alone():
    normalized, _ = normalize_query("今天天气怎么样", LEX)
    assert normalized == "今天天气怎么样"


def test_jieba_keeps_domain_words_whole():
    tokens = tokenize("养老金资格认证在哪里办")
    assert "养老金资格认证" in tokens
    assert "的" not in tokenize("我的低保")


def test_sentences_end_at_chinese_punctuation():
    text = "第一句。第二句！第三句？第四句；最后"
    pieces = [text[s:e] for s, e in split_sentences(text)]
    assert pieces == ["第一句。", "第二句！", "第三句？", "第四句；", "最后"]


def test_english_sentences_split_on_full_stops():
    text = "Bring your ID card. Then go to the centre."
    assert [text[s:e] for s, e in split_sentences(text)] == ["Bring your ID card.", "Then go to the centre."]


def test_language_detection():
    assert detect_language("低保怎么申请") == "zh"
    assert detect_language("How do I apply for dibao?") == "en"
    assert detect_language("我想问 dibao") == "zh"


def test_how_a_question_ends_does_not_change_it():
    plain, _ = normalize_query("医保报销是不是随便哪家医院看病都行", LEX)
    for ending in ("?", "？", "。", "！", " 。"):
        assert normalize_query(plain + ending, LEX)[0] == plain
    assert normalize_query("？？", LEX)[0] == "??"  # nothing but punctuation is kept (width-normalised)
