"""End to end in a real browser: headless Chromium (Debian's package) driven by playwright, in Portuguese.

.ci/run installs chromium with apt and playwright from requirements.txt; `playwright install` is never used (it
downloads a browser build). The test writes a screenshot of each tab (pytest's tmp dir, and a copy in
/tmp/minigpt_screenshots/ to look at)."""

import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = next((p for p in (os.environ.get("MINIGPT_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
if CHROMIUM is None:
    pytest.skip("no chromium executable (apt-get install chromium; .ci/run does it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

from app_server import SPACE_ENV, follow, launched_app, local_client  # noqa: E402
from gradio_client import handle_file  # noqa: E402

SHOTS = Path("/tmp/minigpt_screenshots")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    # as on the hosted Space: Sign in with Hugging Face (dummy OAuth settings; nothing calls huggingface.co)
    with launched_app(tmp_path_factory.mktemp("browser_app"), env=SPACE_ENV) as (_, address):
        end = time.time() + 60
        while True:  # the server answers before the browser is pointed at it
            try:
                urllib.request.urlopen(address + "gradio_api/info", timeout=5)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.5)
        yield address


def open_page(browser, url: str, locale: str = "pt-BR"):
    """A new visitor: a fresh browser context (its own storage), on the app."""
    page = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def save(page, tmp_path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    try:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / name)
    except OSError:
        pass  # the copy is a convenience; the test's own file is what counts
    return path


def train_on_upload(page, corpus: Path, steps: int) -> str:
    """A student's training in the Train tab: their .txt, character tokens, `steps` steps of 4 blocks of 16
    tokens. Returns the finished status's text."""
    expect = sync_api.expect
    page.get_by_role("tab", name="Treinar", exact=True).click()
    page.locator("#corpus-source").get_by_label("meus arquivos .txt", exact=True).check()
    page.locator("input[type=file]").set_input_files(str(corpus))
    shown_name = page.get_by_text(corpus.name).or_(page.get_by_text(corpus.name.replace(" ", "_")))
    expect(shown_name.first).to_be_visible()
    page.get_by_label("caracteres (como no livro)", exact=True).check()
    page.get_by_label("passos", exact=True).check()  # minutes are the default unit
    page.get_by_label("Passos (atualizações do otimizador)").fill(str(steps))
    page.get_by_label("Tamanho do lote (sequências por passo)").fill("4")
    page.get_by_label("Tamanho do bloco (contexto, tokens)").fill("16")
    page.get_by_role("button", name="Começar o treino").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text("Terminado", timeout=240_000)
    return status.inner_text()


def test_a_portuguese_visitor_signs_in_and_waits_in_line_behind_another_visitor(url, tmp_path):
    """Another visitor (a gradio_client) trains; the browser sees the sign-in button, that training's progress
    without its text, and its own place in line after pressing Start; Stop gives the place up."""
    corpus = tmp_path / "notes.txt"
    corpus.write_text("\n\n".join(f"line {i} of a small private text" for i in range(80)))
    other = local_client(url)
    other.predict("upload", [handle_file(str(corpus))], "", "tiny", "char", 300, "steps", 5000, 1, 1, 4, 3e-3, 16, 1,
                  api_name="/train")
    expect = sync_api.expect
    try:
        end = time.time() + 240
        while other.predict(api_name="/training_status").get("state") != "running":
            assert time.time() < end, "the other visitor's training did not start"
            time.sleep(0.5)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = open_page(browser, url)
                expect(page.get_by_role("button", name="Entrar com Hugging Face")).to_be_visible(timeout=60_000)
                expect(page.get_by_text("conectada, seus treinos seguem você")).to_be_visible()
                expect(page.get_by_text("Um treino de outro visitante está rodando")).to_be_visible(timeout=60_000)
                expect(page.locator("#train-status")).not_to_contain_text("private text")
                page.get_by_role("button", name="Começar o treino").click()
                expect(page.locator("#queue-position")).to_contain_text("Na fila: você é o número 1", timeout=60_000)
                save(page, tmp_path, "pt_fila.png")
                page.get_by_role("button", name="Parar", exact=True).click()
                expect(page.get_by_text("Você saiu da fila.").first).to_be_visible(timeout=60_000)
                expect(page.locator("#train-status")).not_to_contain_text("falhou")
            finally:
                browser.close()
    finally:
        other.predict(api_name="/stop")
        follow(other, timeout=240)


@pytest.mark.parametrize(("locale", "corpus", "prompt", "tabs", "term"), [
    # the pt-BR page's corpus, prompt and glossary are checked in the Portuguese walk below
    ("en-US", "the Python Language Reference (English, built-in)", "The value of", ("Generate", "Glossary"),
     "Cross entropy"),
])
def test_the_visitors_language_picks_the_corpus_the_prompt_and_the_glossary(url, tmp_path, locale, corpus, prompt,
                                                                            tabs, term):
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = open_page(browser, url, locale)
            expect(page.locator("#corpus-source").get_by_label(corpus, exact=True)).to_be_checked()
            page.get_by_role("tab", name=tabs[0], exact=True).click()
            expect(page.locator("#gen-prompt textarea")).to_have_value(prompt)
            page.get_by_role("tab", name=tabs[1], exact=True).click()
            expect(page.locator("#glossary")).to_contain_text(term)
            for other in ("checkpoint", "Checkpoint"):
                if other in page.locator("#glossary").inner_text():
                    break
            else:
                raise AssertionError("the glossary lacks 'checkpoint'")
            save(page, tmp_path, f"{locale}_glossary.png")
        finally:
            browser.close()


# Words a Portuguese page may hold although the app's English texts use them too: the chapter's technical terms
# (kept in English in Portuguese books), names, and words spelled alike in both languages.
ACCEPTED_TERMS = {
    "token", "tokens", "top-k", "top-p", "k", "p", "batch", "checkpoint", "softmax", "logits", "embeddings", "bpe",
    "gpt", "gpt-2", "minigpt", "prompt", "prompts", "corpus", "dataset", "hub", "hugging", "face", "transformers",
    "safetensors", "config", "nats", "bits", "log", "exp", "greedy", "beam", "search", "forward", "pass",
    "backpropagation", "generate", "api", "python", "machado", "assis", "txt", "zip", "utf-8", "kb", "mb",
}
SPELLED_ALIKE = {"a", "as", "b", "de", "e", "no", "o", "s", "chance", "total", "zero", "compare", "continue"}
# English words of Gradio's own page and common ones that the app's texts might not contain
ENGLISH_EXTRA = {"the", "of", "and", "to", "with", "for", "from", "this", "that", "is", "are", "by", "on", "it",
                 "or", "not", "yet", "settings", "loading", "complete", "error", "built", "use", "here", "click",
                 "upload", "drop", "file", "left", "seen", "lr", "tiny", "small", "base", "processing", "queue"}
# What a model writes or is made of (its tokens, its texts): not the app's words
MODEL_OUTPUT = ["#chart-before", "#chart-after", "#probs-summary code", "#surprise-out", "#samples pre", "#gen-output",
                "#gen-model", "#cmp-model-a", "#cmp-model-b"]


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-zÀ-ÖØ-öø-ÿ]+(?:-[A-Za-z0-9]+)*", text)}


def english_words() -> set[str]:
    """Every word of the app's English texts, and a few common English ones, less those accepted in Portuguese."""
    from space.texts import MESSAGES, UI_EN

    found = set(ENGLISH_EXTRA)
    for text in [*UI_EN.values(), *MESSAGES["en"].values()]:
        found |= words(re.sub(r"\{[^}]*\}", " ", text))
    return found - ACCEPTED_TERMS - SPELLED_ALIKE


def english_on_page(page) -> set[str]:
    """The English words in the page's visible text (what the models wrote left out)."""
    shown = words(page.locator("body").inner_text())
    for selector in MODEL_OUTPUT:
        for element in page.locator(selector).all():
            shown -= words(element.inner_text())
    return shown & english_words()


def generate_in_browser(page, prompt: str) -> str:
    """The Generate tab's button, with a sampling strategy; returns the text once the stream has ended."""
    expect = sync_api.expect
    page.locator("#gen-prompt textarea").fill(prompt)
    page.locator("#gen-strategy").get_by_text("amostragem", exact=True).click()
    page.get_by_role("button", name="Gerar", exact=True).click()
    output = page.locator("#gen-output textarea")
    expect(output).to_have_value(re.compile(rf"^{re.escape(prompt)}.{{10,}}", re.S), timeout=60_000)
    text, end = output.input_value(), time.time() + 60
    while time.time() < end:  # the stream has ended when the text stops growing
        page.wait_for_timeout(1500)
        if output.input_value() == text:
            break
        text = output.input_value()
    return text


def test_a_portuguese_student_walks_every_tab_before_and_after_a_training_and_sees_no_english(url, tmp_path):
    """A pt-BR visitor: the built-in corpus is Machado's, the prompt and the glossary Portuguese; the untrained
    model generates; every tab, before and after a short training, shows no English word but the accepted terms;
    the status line's numbers are written the Portuguese way; the greedy strategy shows no sampling sliders. The
    student's run survives a reload (Train panel and model lists) and is theirs alone."""
    corpus = tmp_path / "capitu.txt"
    corpus.write_text("\n\n".join(f"Capitu olhou para o mar pela {i}ª vez, e a tarde caiu." for i in range(80)))
    expect = sync_api.expect
    leftovers, run = {}, None

    def look(stage: str) -> None:
        for tab in ("Treinar", "Gerar", "Comparar", "Probabilidades", "Glossário"):
            page.get_by_role("tab", name=tab, exact=True).click()
            if tab == "Probabilidades":
                page.locator("#probs-btn").click()
                expect(page.get_by_text("tokens mantêm alguma chance")).to_be_visible()
                page.locator("#surprise-btn").click()
                expect(page.get_by_text("nats/token =")).to_be_visible()
                expect(page.locator("text=Entropia cruzada >> visible=true").last).to_be_visible()
                # the Machado sentence, in tokens (the spaces between them are the page's)
                if stage == "before":
                    expect(page.locator("#surprise-out")).to_contain_text(re.compile(r"\s*".join("Engenho")))
            if tab == "Treinar" and stage == "after":  # the finished runs' download and push
                page.get_by_text("Modelos treinados: baixar ou compartilhar").click()
                expect(page.get_by_text("Formato GPT-2")).to_be_visible()
            if tab == "Gerar" and stage == "after":  # the run just trained, chosen: its facts
                page.locator("#gen-model input").click()
                page.get_by_role("option", name=re.compile("não treinado")).first.click()
                page.locator("#gen-model input").click()
                page.get_by_role("option", name=re.compile(re.escape(run) + r" \(")).click()
                expect(page.locator("#gen-facts")).to_contain_text("treinado em 256 tokens (texto enviado)")
            if tab == "Comparar":
                page.locator("#compare-btn").click()
                if stage == "before":
                    expect(page.get_by_text("Ainda não há modelo treinado").first).to_be_visible()
            if tab == "Glossário":
                expect(page.locator("#glossary")).to_contain_text("Entropia cruzada")
                expect(page.locator("#glossary")).to_contain_text(re.compile("[Cc]heckpoint"))
            page.wait_for_timeout(250)  # the tab's texts rendered
            found = english_on_page(page)
            if found:
                leftovers[f"{stage}/{tab}"] = sorted(found)
            if stage == "before":
                save(page, tmp_path, f"pt_{tab.lower()}.png")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = open_page(browser, url)
            expect(page.get_by_role("tab", name="Treinar", exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Começar o treino")).to_be_visible()
            expect(page.get_by_text("Nenhum treino ainda")).to_be_visible()
            machado = "Machado de Assis: dois romances (português, embutido)"
            expect(page.locator("#corpus-source").get_by_label(machado, exact=True)).to_be_checked()
            page.get_by_role("tab", name="Gerar", exact=True).click()
            expect(page.locator("#gen-prompt textarea")).to_have_value("Era uma vez")
            expect(page.locator("#gen-model input")).to_have_value(re.compile("não treinado"))
            for knob in ("temperature", "top-p", "seed"):  # the default strategy: top-p sampling
                expect(page.locator(f"#gen-{knob}")).to_be_visible()
            text = generate_in_browser(page, "O modelo")
            assert text.startswith("O modelo") and len(text) > 30
            assert save(page, tmp_path, "pt_gerar.png").stat().st_size > 10_000
            page.locator("#gen-strategy").get_by_text("gulosa (greedy)").click()
            for knob in ("temperature", "top-k", "top-p", "seed", "num-beams"):
                expect(page.locator(f"#gen-{knob}")).to_be_hidden()
            page.locator("#gen-strategy").get_by_text("busca em feixe (beam search)").click()
            expect(page.locator("#gen-num-beams")).to_be_visible()
            expect(page.locator("#gen-temperature")).to_be_hidden()
            look("before")

            shown = train_on_upload(page, corpus, steps=4)
            run = re.search(r"salvo como (\S+)", shown).group(1)
            assert "taxa de aprendizado 0,003" in shown and "lote 4" in shown and "(embutido)" not in shown
            assert re.search(r"época \d+,\d\d", shown) and "256 tokens vistos" in shown, shown  # 4 x 4 x 16
            save(page, tmp_path, "pt_treinado.png")
            look("after")

            # a reload keeps the student's run (the visitor is the id their browser keeps, not the tab's session)
            page.reload()
            expect(page.locator("#train-status")).to_contain_text(f"Terminado: o modelo foi salvo como {run}",
                                                                  timeout=60_000)
            page.get_by_role("tab", name="Gerar", exact=True).click()
            expect(page.locator("#gen-model input")).to_have_value(re.compile(re.escape(run)))
            save(page, tmp_path, "pt_recarregada.png")
            # another browser is another visitor: the run is not theirs
            stranger = open_page(browser, url)
            expect(stranger.get_by_text("Nenhum treino ainda")).to_be_visible(timeout=60_000)
            stranger.get_by_role("tab", name="Gerar", exact=True).click()
            stranger.locator("#gen-model input").click()
            expect(stranger.get_by_role("option").first).to_be_visible()
            assert run not in " ".join(stranger.get_by_role("option").all_inner_texts())
        finally:
            browser.close()
    assert not leftovers, f"English on the Portuguese page: {leftovers}"
