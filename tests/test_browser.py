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

from app_server import SPACE_ENV, follow, launched_app  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

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


def test_portuguese_browser_sees_portuguese_tabs_and_generates_text(url, tmp_path):
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = browser.new_context(locale="pt-BR", viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            for tab in ("Treinar", "Gerar", "Comparar", "Probabilidades"):
                expect(page.get_by_role("tab", name=tab, exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Começar o treino")).to_be_visible()
            expect(page.get_by_text("Nenhum treino ainda")).to_be_visible()
            save(page, tmp_path, "pt_treinar.png")

            page.get_by_role("tab", name="Gerar", exact=True).click()
            prompt = page.locator("#gen-prompt textarea")
            expect(prompt).to_be_visible()
            expect(page.locator("#gen-model input")).to_have_value(re.compile("não treinado"))
            prompt.fill("O modelo")
            page.locator("#gen-strategy").get_by_text("amostragem").click()
            page.get_by_role("button", name="Gerar", exact=True).click()
            output = page.locator("#gen-output textarea")
            expect(output).to_have_value(re.compile(r"^O modelo.{10,}", re.S),
                                         timeout=60_000)
            text, end = output.input_value(), time.time() + 60
            while time.time() < end:  # the stream has ended when the text stops growing
                page.wait_for_timeout(1500)
                if output.input_value() == text:
                    break
                text = output.input_value()
            assert text.startswith("O modelo") and len(text) > 30
            assert save(page, tmp_path, "pt_gerar.png").stat().st_size > 10_000

            page.get_by_role("tab", name="Comparar", exact=True).click()
            page.locator("#compare-btn").click()
            expect(page.get_by_text("Ainda não há modelo treinado").first).to_be_visible()
            save(page, tmp_path, "pt_comparar.png")

            page.get_by_role("tab", name="Probabilidades", exact=True).click()
            page.locator("#probs-btn").click()
            expect(page.get_by_text("tokens mantêm alguma chance")).to_be_visible()
            page.locator("#surprise-btn").click()
            expect(page.locator("text=Entropia cruzada >> visible=true").last).to_be_visible()
            # the untrained model has the Machado tokenizer for a Portuguese visitor: the text in its pieces
            expect(page.locator("#surprise-out")).to_contain_text(re.compile(r"Surpresa por token\s+\S+\s+\S+"))
            save(page, tmp_path, "pt_probabilidades.png")
        finally:
            browser.close()


def test_a_portuguese_visitor_signs_in_and_waits_in_line_behind_another_visitor(url, tmp_path):
    """Another visitor (a gradio_client) trains; the browser sees the sign-in button, that training's progress
    without its text, and its own place in line after pressing Start; Stop gives the place up."""
    corpus = tmp_path / "notes.txt"
    corpus.write_text("\n\n".join(f"line {i} of a small private text" for i in range(80)))
    other = Client(url, verbose=False, analytics_enabled=False)
    other.predict("upload", [handle_file(str(corpus))], "", "tiny", "char", 300, "steps", 5000, 1, 4, 3e-3, 16, 1,
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
                expect(page.get_by_text("Com login, seus treinos seguem você")).to_be_visible()
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


def test_a_students_run_survives_a_reload_and_is_theirs_alone(url, tmp_path):
    """A student trains in the browser and reloads: the Train panel still shows their run and every model list
    offers it (the visitor is the id their browser keeps, not the tab's session). Another browser is another
    visitor."""
    corpus = tmp_path / "minhas notas.txt"
    corpus.write_text("\n\n".join(f"linha {i} de um texto pequeno da aluna" for i in range(80)))
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = open_page(browser, url)
            page.locator("#corpus-source").get_by_label("meus arquivos .txt", exact=True).check()
            page.locator("input[type=file]").set_input_files(str(corpus))
            expect(page.get_by_text("minhas_notas.txt").or_(page.get_by_text("minhas notas.txt")).first).to_be_visible()
            page.get_by_label("caracteres (como no livro)", exact=True).check()
            page.get_by_label("Passos (atualizações do otimizador)").fill("3")
            page.get_by_label("Tamanho do lote (sequências por passo)").fill("4")
            page.get_by_label("Tamanho do bloco (contexto, tokens)").fill("16")
            page.get_by_role("button", name="Começar o treino").click()
            status = page.locator("#train-status")
            expect(status).to_contain_text("Terminado", timeout=240_000)
            run = re.search(r"salvo como (\S+)", status.inner_text()).group(1)

            page.reload()
            expect(status).to_contain_text(f"Terminado: o modelo foi salvo como {run}", timeout=60_000)
            page.get_by_role("tab", name="Gerar", exact=True).click()
            expect(page.locator("#gen-model input")).to_have_value(re.compile(re.escape(run)))
            save(page, tmp_path, "pt_recarregada.png")

            stranger = open_page(browser, url)
            expect(stranger.get_by_text("Nenhum treino ainda")).to_be_visible(timeout=60_000)
            stranger.get_by_role("tab", name="Gerar", exact=True).click()
            stranger.locator("#gen-model input").click()
            expect(stranger.get_by_role("option").first).to_be_visible()
            assert run not in " ".join(stranger.get_by_role("option").all_inner_texts())
        finally:
            browser.close()


@pytest.mark.parametrize(("locale", "corpus", "prompt", "tabs", "term"), [
    ("pt-BR", "Machado de Assis: dois romances (português, embutido)", "Era uma vez", ("Gerar", "Glossário"),
     "Entropia cruzada"),
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
