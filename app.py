"""MiniGPT's Gradio Space: train a small GPT, generate with it, compare before vs after, see the probabilities.

    python app.py                         # http://127.0.0.1:7860 (on a Space: 0.0.0.0, port from the Space)
    python app.py --model runs/minigpt    # also offer saved model folders in the model lists

Thin on purpose: training is training.run_training (the same pipeline as train.py), decoding is transformers'
generate() with the settings of teaching.DecodingSettings, the Probabilities tab is teaching.py, models come from
model_registry.py. The UI speaks Portuguese (pt-BR) and English: static texts through gr.I18n (the browser's
language picks), messages made while running in the language of the request's Accept-Language header.

Environment: MINIGPT_APP_RUNS (runs folder, default runs/app), MINIGPT_APP_MODELS (more model folders, separated
by os.pathsep), MINIGPT_APP_MAX_UPLOAD_MB (per upload, default 5), HF_TOKEN (shows "Push to the Hub").
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a classroom machine
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the app runs tokenizers from several threads

import argparse  # noqa: E402
import contextvars  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
import zipfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from transformers import StoppingCriteriaList, TrainerCallback  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from corpus import CorpusError  # noqa: E402
from hub import HubError  # noqa: E402
from model_registry import APP_RUN_FILE, LATEST, UNTRAINED, ModelError, ModelRegistry  # noqa: E402
from monitoring import perplexity  # noqa: E402
from teaching import (  # noqa: E402
    DecodingSettings,
    StopOnEvent,
    TeachingError,
    encode_prompt,
    next_token_distribution,
    token_surprises,
)
from training import DataArguments, MiniGPTTrainingArguments, ModelArguments, SetupError, run_training  # noqa: E402

logger = logging.getLogger("minigpt.app")

APP_PRESETS = ("tiny", "small", "base")  # gpt2-sized training is not for a CPU Space
DEFAULT_PROMPT = "The value of"
DEFAULT_TEXT = "The if statement is used for conditional execution."
GENERATE_CONCURRENCY = 8  # generations (and probability views) running at once, training or not

TRAIN_DEFAULTS = dict(corpus_source="builtin", preset="tiny", tokenizer_type="bpe", vocab_size=2048,
                      length_unit="steps", max_steps=400, epochs=1.0, batch_size=16, learning_rate=3e-3,
                      block_size=128, seed=42)
GEN_DEFAULTS = dict(strategy="top_p", temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1,
                    max_new_tokens=60, seed=0, num_beams=4)


# ================================================================================================================
# Languages


def _ui_texts() -> tuple[dict, dict]:
    """Static UI texts (gr.I18n): English and Portuguese (Brazil)."""
    en, pt = {}, {}

    def add(key, english, portuguese):
        en[key], pt[key] = english, portuguese

    add("intro", "# MiniGPT\nA small GPT that is a real Hugging Face `transformers` model. **Train** it, watch the "
        "loss fall, **generate** text, **compare** it before and after training and see the **probabilities** "
        "behind each word: cross entropy, perplexity, temperature, top-k and top-p.",
        "# MiniGPT\nUm GPT pequeno que é um modelo de verdade do `transformers` da Hugging Face. **Treine**, veja a "
        "perda cair, **gere** texto, **compare** antes e depois do treino e veja as **probabilidades** por trás de "
        "cada palavra: entropia cruzada, perplexidade, temperatura, top-k e top-p.")
    add("tab_train", "Train", "Treinar")
    add("tab_generate", "Generate", "Gerar")
    add("tab_compare", "Compare", "Comparar")
    add("tab_probs", "Probabilities", "Probabilidades")
    # Train
    add("train_help", "Pre-train a GPT from random weights on a corpus. Every evaluation measures the validation "
        "loss (text the model never trained on) and continues two prompts, so you can watch gibberish turn into "
        "text. One training runs at a time for everybody; its progress is shown to every visitor.",
        "Pré-treine um GPT a partir de pesos aleatórios num corpus. A cada avaliação medimos a perda de validação "
        "(texto que o modelo nunca viu no treino) e continuamos dois prompts: dá para ver o texto sem sentido "
        "virar texto. Um treino roda por vez para todos; o progresso aparece para todo visitante.")
    add("corpus_source", "Corpus", "Corpus")
    add("src_builtin", "built-in (Python Language Reference)", "embutido (Python Language Reference)")
    add("src_upload", "my .txt files", "meus arquivos .txt")
    add("src_hub", "a Hugging Face Hub dataset", "um dataset do Hugging Face Hub")
    add("files", "Text files (.txt, UTF-8)", "Arquivos de texto (.txt, UTF-8)")
    add("hub_dataset", "Hub dataset name", "Nome do dataset no Hub")
    add("hub_dataset_info", "e.g. karpathy/tiny_shakespeare (a 'text' column); needs internet",
        "ex.: karpathy/tiny_shakespeare (coluna 'text'); precisa de internet")
    add("preset", "Model size", "Tamanho do modelo")
    add("tokenizer_type", "Tokenizer", "Tokenizador")
    add("tok_bpe", "BPE (GPT-2 style)", "BPE (como o GPT-2)")
    add("tok_char", "characters (as in the book)", "caracteres (como no livro)")
    add("vocab_size", "BPE vocabulary size", "Tamanho do vocabulário BPE")
    add("hyper", "Hyperparameters", "Hiperparâmetros")
    add("length_unit", "Train for", "Treinar por")
    add("unit_steps", "steps", "passos")
    add("unit_epochs", "epochs", "épocas")
    add("max_steps", "Steps (optimizer updates)", "Passos (atualizações do otimizador)")
    add("epochs", "Epochs (passes over the corpus)", "Épocas (passadas pelo corpus)")
    add("batch_size", "Batch size (sequences per step)", "Tamanho do lote (sequências por passo)")
    add("learning_rate", "Learning rate", "Taxa de aprendizado")
    add("block_size", "Block size (context, tokens)", "Tamanho do bloco (contexto, tokens)")
    add("seed", "Seed", "Semente")
    add("start", "Start training", "Começar o treino")
    add("stop", "Stop", "Parar")
    add("train_status", "Training", "Treino")
    add("loss_plot", "Loss (cross entropy, nats/token)", "Perda (entropia cruzada, nats/token)")
    add("ppl_plot", "Perplexity", "Perplexidade")
    add("samples", "Sample text at each evaluation", "Texto de amostra a cada avaliação")
    add("trained_models", "Trained models: download or share", "Modelos treinados: baixar ou compartilhar")
    add("run_select", "Run", "Treino")
    add("download", "Download as .zip", "Baixar como .zip")
    add("zip_file", "Model files", "Arquivos do modelo")
    add("repo_id", "Hub repository (user/name)", "Repositório no Hub (usuário/nome)")
    add("push", "Push to the Hub", "Enviar ao Hub")
    add("no_job", "No training yet. Press **Start training**.", "Nenhum treino ainda. Aperte **Começar o treino**.")
    # Generate
    add("gen_help", "Continue a prompt with a model: the untrained one (random weights) works right away; trained "
        "runs appear here when they finish. **Greedy** always takes the most likely token; **sampling** draws from "
        "the probabilities (a low temperature sharpens them, a high one flattens them); **top-k** draws only among "
        "the k most likely tokens; **top-p** among the fewest tokens whose probabilities add up to p; **beam "
        "search** keeps the best few continuations. The same seed gives the same text.",
        "Continue um prompt com um modelo: o não treinado (pesos aleatórios) funciona desde já; os treinos "
        "aparecem aqui quando terminam. **Greedy** (guloso) pega sempre o token mais provável; **amostragem** "
        "sorteia pelas probabilidades (temperatura baixa as deixa mais concentradas, alta as achata); **top-k** "
        "sorteia só entre os k tokens mais prováveis; **top-p** entre os menos tokens cujas probabilidades somam "
        "p; **beam search** mantém as melhores continuações. A mesma semente dá o mesmo texto.")
    add("model", "Model", "Modelo")
    add("prompt", "Prompt", "Prompt")
    add("strategy", "Decoding strategy", "Estratégia de decodificação")
    add("st_greedy", "greedy", "greedy (gulosa)")
    add("st_sample", "sampling", "amostragem")
    add("st_top_k", "top-k", "top-k")
    add("st_top_p", "top-p (nucleus)", "top-p (núcleo)")
    add("st_beam", "beam search", "beam search")
    add("temperature", "Temperature", "Temperatura")
    add("top_k", "top-k", "top-k")
    add("top_p", "top-p", "top-p")
    add("repetition_penalty", "Repetition penalty (1 = off)", "Penalidade de repetição (1 = desligada)")
    add("max_new_tokens", "Max new tokens", "Máximo de tokens novos")
    add("num_beams", "Beams (beam search)", "Feixes (beam search)")
    add("generate", "Generate", "Gerar")
    add("output", "Text", "Texto")
    # Compare
    add("cmp_help", "One prompt, one set of settings, two models side by side. By default: the model **before** "
        "training (random weights) and the **latest trained** one.",
        "Um prompt, um conjunto de configurações, dois modelos lado a lado. Por padrão: o modelo **antes** do "
        "treino (pesos aleatórios) e o **último treinado**.")
    add("model_a", "Model A (before)", "Modelo A (antes)")
    add("model_b", "Model B (after)", "Modelo B (depois)")
    add("compare", "Compare", "Comparar")
    add("output_a", "Text of model A", "Texto do modelo A")
    add("output_b", "Text of model B", "Texto do modelo B")
    # Probabilities
    add("probs_help", "What the model thinks comes next: the probability of each candidate token **before** and "
        "**after** the repetition penalty, temperature, top-k and top-p (transformers' own logits processors, in "
        "generate()'s order). Tokens cut off are marked ✂ and drawn in red. top-k 0 and top-p 1 switch them off.",
        "O que o modelo acha que vem a seguir: a probabilidade de cada token candidato **antes** e **depois** da "
        "penalidade de repetição, temperatura, top-k e top-p (os próprios processadores de logits do "
        "transformers, na ordem do generate()). Tokens cortados aparecem com ✂ e em vermelho. top-k 0 e top-p 1 "
        "os desligam.")
    add("n_bars", "Tokens shown", "Tokens mostrados")
    add("show_probs", "Show next-token probabilities", "Mostrar probabilidades do próximo token")
    add("chart_before", "Before: softmax of the logits", "Antes: softmax dos logits")
    add("chart_after", "After: the distribution generate() samples from",
        "Depois: a distribuição da qual o generate() sorteia")
    add("prob_table", "Details", "Detalhes")
    add("surprise_help", "### Surprise = cross entropy\nFor each token of a text, how surprised the model is: "
        "−log p(token | the text before it), in nats and bits. The average is the cross entropy (the training "
        "loss) and exp(average) is the perplexity. Redder = more surprising; full red = as surprising as a "
        "uniform guess over the vocabulary.",
        "### Surpresa = entropia cruzada\nPara cada token de um texto, o quanto o modelo se surpreende: "
        "−log p(token | o texto antes dele), em nats e bits. A média é a entropia cruzada (a perda do treino) e "
        "exp(média) é a perplexidade. Mais vermelho = mais surpreendente; vermelho total = tão surpreendente "
        "quanto um chute uniforme no vocabulário.")
    add("text", "Text", "Texto")
    add("measure", "Measure surprise", "Medir a surpresa")
    add("surprise", "Surprise per token", "Surpresa por token")
    return en, pt


UI_EN, UI_PT = _ui_texts()
I18N = gr.I18n(en=UI_EN, **{"pt-BR": UI_PT, "pt": UI_PT})
T = I18N  # T("key") -> a translation key the browser resolves

MESSAGES = {
    "en": {
        "busy": "A training is already running (started {ago} ago): its progress is shown here. Only one training "
                "runs at a time; start yours when it ends.",
        "starting": "Preparing the corpus, the tokenizer and the model...",
        "running": "Training",
        "stopping": "Stopping after the current step; the model keeps what it learned...",
        "finished": "Finished: the model is saved as **{run}** and is now in every model list.",
        "stopped": "Stopped at step {step}: the model is saved as **{run}** (usable) and is now in every model list.",
        "failed": "Training failed: {error}",
        "no_job": "No training yet. Press **Start training**.",
        "step": "step", "of": "of", "epoch": "epoch", "tokens_seen": "tokens seen", "tokens_s": "tokens/s",
        "train": "train", "validation": "validation", "loss": "loss", "perplexity": "perplexity",
        "elapsed": "elapsed", "remaining": "left", "greedy": "greedy", "sampled": "sampled (temperature 0.8, top-k 50)",
        "nothing_to_stop": "No training is running.",
        "stop_requested": "Stop requested: training ends after the current step and saves the model.",
        "need_files": "Choose one or more .txt files to upload, or pick another corpus.",
        "need_hub": "Type a Hub dataset name such as karpathy/tiny_shakespeare.",
        "bad_hub": "{name!r} is not a Hub dataset name: use owner/name (letters, digits, - _ .).",
        "not_txt": "{name}: only .txt files can be uploaded (plain UTF-8 text).",
        "too_big": "{name} is {size:.1f} MB: the limit is {limit:g} MB per file and in total. Upload a smaller text.",
        "not_text": "{name} is not a text file (it is not UTF-8 or holds binary data). Save it as UTF-8 text.",
        "empty_file": "{name} holds no text.",
        "bad_value": "{what} must be {rule}; got {value}.",
        "setup_error": "Cannot start: {error}",
        "no_trained": "No trained model yet: train one in the Train tab. Showing model A only.",
        "clipped": "The prompt ({prompt} tokens) + {asked} new tokens exceed the context of {context}: "
                   "generating {given} tokens.",
        "no_token": "Pushing needs a Hugging Face token: set the HF_TOKEN secret of the Space.",
        "need_repo": "Type the Hub repository to push to, such as your-name/minigpt.",
        "pushed": "Pushed to {url}",
        "no_runs": "No finished run to download yet.",
        "kept": "kept", "cut": "cut off",
        "probs_summary": "**{kept}** of {vocab} tokens keep a chance after the processors (they held "
                         "{mass} of the probability before). Entropy: {hb} bits before, {ha} bits after. "
                         "Most likely next token: `{top}`.",
        "surprise_summary": "**Cross entropy**: {nats} nats/token = {bits} bits/token · **perplexity** "
                            "{ppl} (the model hesitates as if among about {ppl0} equally likely tokens; a "
                            "uniform guess over {vocab} tokens is {ubits} bits). {n} tokens.",
        "truncated": " Only the first {n} tokens fit the context.",
        "col_token": "token", "col_p_before": "p before", "col_p_after": "p after", "col_kept": "kept",
        "col_logit": "logit", "col_rank": "rank", "col_prob": "p", "col_nats": "nats", "col_bits": "bits",
        "col_position": "position", "probability": "probability", "col_step": "step",
        "legend_split": "split", "legend_cut": "top-k / top-p", "prompt": "prompt",
    },
    "pt": {
        "busy": "Já há um treino rodando (começou há {ago}): o progresso dele aparece aqui. Só um treino roda por "
                "vez; comece o seu quando ele terminar.",
        "starting": "Preparando o corpus, o tokenizador e o modelo...",
        "running": "Treinando",
        "stopping": "Parando depois do passo atual; o modelo guarda o que aprendeu...",
        "finished": "Terminado: o modelo foi salvo como **{run}** e já está em todas as listas de modelos.",
        "stopped": "Parado no passo {step}: o modelo foi salvo como **{run}** (utilizável) e já está em todas as "
                   "listas de modelos.",
        "failed": "O treino falhou: {error}",
        "no_job": "Nenhum treino ainda. Aperte **Começar o treino**.",
        "step": "passo", "of": "de", "epoch": "época", "tokens_seen": "tokens vistos", "tokens_s": "tokens/s",
        "train": "treino", "validation": "validação", "loss": "perda", "perplexity": "perplexidade",
        "elapsed": "decorrido", "remaining": "faltam", "greedy": "greedy",
        "sampled": "amostrado (temperatura 0,8, top-k 50)",
        "nothing_to_stop": "Nenhum treino está rodando.",
        "stop_requested": "Parada pedida: o treino termina depois do passo atual e salva o modelo.",
        "need_files": "Escolha um ou mais arquivos .txt para enviar, ou outro corpus.",
        "need_hub": "Digite o nome de um dataset do Hub, como karpathy/tiny_shakespeare.",
        "bad_hub": "{name!r} não é um nome de dataset do Hub: use dono/nome (letras, dígitos, - _ .).",
        "not_txt": "{name}: só arquivos .txt podem ser enviados (texto puro em UTF-8).",
        "too_big": "{name} tem {size:.1f} MB: o limite é {limit:g} MB por arquivo e no total. Envie um texto menor.",
        "not_text": "{name} não é um arquivo de texto (não é UTF-8 ou tem dados binários). Salve-o como texto UTF-8.",
        "empty_file": "{name} não tem texto.",
        "bad_value": "{what} deve ser {rule}; veio {value}.",
        "setup_error": "Não foi possível começar: {error}",
        "no_trained": "Ainda não há modelo treinado: treine um na aba Treinar. Mostrando só o modelo A.",
        "clipped": "O prompt ({prompt} tokens) + {asked} tokens novos passam do contexto de {context}: "
                   "gerando {given} tokens.",
        "no_token": "Enviar ao Hub precisa de um token da Hugging Face: defina o segredo HF_TOKEN do Space.",
        "need_repo": "Digite o repositório do Hub de destino, como seu-nome/minigpt.",
        "pushed": "Enviado para {url}",
        "no_runs": "Ainda não há treino terminado para baixar.",
        "kept": "mantido", "cut": "cortado",
        "probs_summary": "**{kept}** de {vocab} tokens mantêm alguma chance depois dos processadores (antes "
                         "somavam {mass} da probabilidade). Entropia: {hb} bits antes, {ha} bits depois. "
                         "Próximo token mais provável: `{top}`.",
        "surprise_summary": "**Entropia cruzada**: {nats} nats/token = {bits} bits/token · "
                            "**perplexidade** {ppl} (o modelo hesita como se escolhesse entre cerca de "
                            "{ppl0} tokens igualmente prováveis; um chute uniforme entre {vocab} tokens dá "
                            "{ubits} bits). {n} tokens.",
        "truncated": " Só os primeiros {n} tokens cabem no contexto.",
        "col_token": "token", "col_p_before": "p antes", "col_p_after": "p depois", "col_kept": "mantido",
        "col_logit": "logit", "col_rank": "posição", "col_prob": "p", "col_nats": "nats", "col_bits": "bits",
        "col_position": "posição", "probability": "probabilidade", "col_step": "passo",
        "legend_split": "conjunto", "legend_cut": "top-k / top-p", "prompt": "prompt",
    },
}

TEACHING_PT = {  # teaching.TeachingError keys in Portuguese (English: the error's own message)
    "empty_prompt": "O prompt está vazio: digite algumas palavras para o modelo continuar.",
    "prompt_too_long": "O prompt tem {tokens} tokens, mas o contexto do modelo é de {context}: encurte-o para no "
                       "máximo {limit} tokens.",
    "temperature": "Temperatura {value} com amostragem: ela deve ser maior que 0 (temperatura 0 é a decodificação "
                   "greedy: escolha a estratégia greedy).",
    "top_k": "A amostragem top-k precisa de top_k de pelo menos 1; veio {value}.",
    "top_p": "A amostragem top-p precisa de 0 < top_p <= 1; veio {value}.",
    "num_beams": "O beam search precisa de 2 a 16 feixes; veio {value}.",
    "max_new_tokens": "O máximo de tokens novos deve ficar entre 1 e 4096; veio {value}.",
    "empty_text": "O texto está vazio: cole uma frase para medir.",
}

WHAT = {  # parameter names in messages
    "en": {"max_steps": "Steps", "epochs": "Epochs", "batch_size": "Batch size", "learning_rate": "Learning rate",
           "block_size": "Block size", "vocab_size": "Vocabulary size", "seed": "Seed", "preset": "Model size",
           "tokenizer_type": "Tokenizer", "corpus_source": "Corpus", "length_unit": "Train for"},
    "pt": {"max_steps": "Passos", "epochs": "Épocas", "batch_size": "Tamanho do lote",
           "learning_rate": "Taxa de aprendizado", "block_size": "Tamanho do bloco",
           "vocab_size": "Tamanho do vocabulário", "seed": "Semente", "preset": "Tamanho do modelo",
           "tokenizer_type": "Tokenizador", "corpus_source": "Corpus", "length_unit": "Treinar por"},
}


def request_lang(request: gr.Request | None) -> str:
    """'pt' when the browser prefers Portuguese over English (Accept-Language), else 'en'."""
    header = ""
    if request is not None:
        try:
            header = request.headers.get("accept-language", "") or ""
        except Exception:  # a request without headers (direct calls)
            header = ""
    ranked = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("pt"):
            return "pt"
        if tag.startswith("en"):
            return "en"
    return "en"


def msg(lang: str, key: str, **values) -> str:
    return MESSAGES[lang][key].format(**values)


def app_error(lang: str, text: str) -> gr.Error:
    """A visible error message in the reader's language; the app stays up."""
    return gr.Error(text, title="Erro" if lang == "pt" else "Error", print_exception=False)


def warn(lang: str, text: str) -> None:
    """A toast in the reader's language (the request goes on)."""
    gr.Warning(text, title="Aviso" if lang == "pt" else "Warning")


def friendly(error: Exception, lang: str = "en") -> str:
    """A library message for the app: in Portuguese when teaching.py named the problem, and without
    command-line flags ('--block_size' reads 'block size')."""
    if lang == "pt" and getattr(error, "key", "") in TEACHING_PT:
        return TEACHING_PT[error.key].format(**error.values)
    return re.sub(r"--(\w+)", lambda m: m.group(1).replace("_", " "), str(error)).strip()


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"


def fmt(value: float, lang: str, spec: str) -> str:
    """A number formatted with `spec` in the reader's convention: 1,234.5 in English, 1.234,5 in Portuguese."""
    text = format(value, spec)
    return text.translate(str.maketrans(",.", ".,")) if lang == "pt" else text


def fmt_int(value: int, lang: str) -> str:
    return fmt(int(value), lang, ",d")


def fmt_num(value: float | None, lang: str, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt(value, lang, f",.{digits}f")


# ================================================================================================================
# The training job: one at a time for the whole app


@dataclass
class JobSnapshot:
    id: str
    version: int
    state: str  # starting | running | stopping | finished | stopped | failed
    run_name: str
    settings: dict
    started: float
    ended: float | None
    step: int
    max_steps: int | None
    epoch: float
    tokens_seen: int
    tokens_per_second: float | None
    points: list  # dicts: step, tokens_seen, curve (train|validation), loss, perplexity
    samples: list
    error: str | None
    entry_key: str | None
    stop_requested_at: int | None  # the step the training was at when Stop was pressed

    @property
    def done(self) -> bool:
        return self.state in ("finished", "stopped", "failed")


class TrainingJob:
    """One training run in a worker thread. Trainer callbacks write its progress here under a condition
    variable; any number of viewers (the starting request, every visitor's timer) read snapshots of it."""

    def __init__(self, run_name: str, output_dir: Path, settings: dict, model_args, data_args, training_kwargs,
                 cleanup: Path | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.run_name = run_name
        self.output_dir = output_dir
        self.settings = settings
        self.model_args, self.data_args, self.training_kwargs = model_args, data_args, training_kwargs
        self.cleanup = cleanup
        self.stop_event = threading.Event()
        self._cond = threading.Condition()
        self._version = 0
        self._state = "starting"
        self._started = time.time()
        self._ended = None
        self._step, self._max_steps, self._epoch, self._tokens_seen, self._tps = 0, None, 0.0, 0, None
        self._points: list[dict] = []
        self._samples: list[dict] = []
        self._error = None
        self._entry_key = None
        self._stop_requested_at = None
        self.thread: threading.Thread | None = None

    def _update(self, **changes) -> None:
        with self._cond:
            for name, value in changes.items():
                setattr(self, f"_{name}", value)
            self._version += 1
            self._cond.notify_all()

    def snapshot(self) -> JobSnapshot:
        with self._cond:
            return JobSnapshot(
                id=self.id, version=self._version, state=self._state, run_name=self.run_name,
                settings=dict(self.settings), started=self._started, ended=self._ended, step=self._step,
                max_steps=self._max_steps, epoch=self._epoch, tokens_seen=self._tokens_seen,
                tokens_per_second=self._tps, points=list(self._points), samples=list(self._samples),
                error=self._error, entry_key=self._entry_key, stop_requested_at=self._stop_requested_at,
            )

    def wait(self, after_version: int, timeout: float) -> JobSnapshot:
        with self._cond:
            self._cond.wait_for(lambda: self._version != after_version, timeout=timeout)
        return self.snapshot()

    @property
    def active(self) -> bool:
        with self._cond:
            return self._state in ("starting", "running", "stopping")

    def request_stop(self) -> None:
        with self._cond:
            self.stop_event.set()
            if self._state in ("starting", "running"):
                self._stop_requested_at = self._step
                self._state = "stopping"
                self._version += 1
                self._cond.notify_all()

    # called from the Trainer's thread
    def on_progress(self, state, logs: dict | None = None) -> None:
        with self._cond:
            if self._state == "starting":
                self._state = "stopping" if self.stop_event.is_set() else "running"
            self._step, self._max_steps = state.global_step, state.max_steps
            self._epoch = float(state.epoch or 0.0)
            if logs:
                self._tokens_seen = int(logs.get("tokens_seen", self._tokens_seen))
                if "tokens_per_second" in logs:
                    self._tps = float(logs["tokens_per_second"])
                if "loss" in logs:
                    self._points.append({"step": state.global_step, "tokens_seen": self._tokens_seen,
                                         "curve": "train", "loss": float(logs["loss"]),
                                         "perplexity": perplexity(float(logs["loss"]))})
                if "eval_loss" in logs and not any(p["curve"] == "validation" and p["step"] == state.global_step
                                                   for p in self._points):
                    self._points.append({"step": state.global_step, "tokens_seen": self._tokens_seen,
                                         "curve": "validation", "loss": float(logs["eval_loss"]),
                                         "perplexity": perplexity(float(logs["eval_loss"]))})
            self._version += 1
            self._cond.notify_all()

    def on_sample(self, sample: dict) -> None:
        with self._cond:
            self._samples.append(dict(sample))
            self._version += 1
            self._cond.notify_all()

    def finish(self, entry_key: str | None) -> None:
        self._update(state="stopped" if self.stop_event.is_set() else "finished", ended=time.time(),
                     entry_key=entry_key)

    def fail(self, error: str) -> None:
        self._update(state="failed", ended=time.time(), error=error)


class JobProgressCallback(TrainerCallback):
    """Trainer -> TrainingJob: every step (progress bar) and every log (loss, perplexity, tokens/s)."""

    def __init__(self, job: TrainingJob):
        self.job = job

    def on_train_begin(self, args, state, control, **kwargs):
        self.job.on_progress(state)

    def on_step_end(self, args, state, control, **kwargs):
        self.job.on_progress(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.job.on_progress(state, logs)


class JobBoard:
    """The app's single training slot. start() refuses (returns False) while a job is active."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current: TrainingJob | None = None

    def busy(self) -> bool:
        with self._lock:
            return self.current is not None and self.current.active

    def start(self, job: TrainingJob, work) -> bool:
        with self._lock:
            if self.current is not None and self.current.active:
                return False
            self.current = job
        # copy_context: the worker keeps the request's context (gr.Progress and friends find their event)
        job.thread = threading.Thread(target=contextvars.copy_context().run, args=(work, job),
                                      name=f"minigpt-train-{job.id}", daemon=True)
        job.thread.start()
        return True


# ================================================================================================================
# The app's state


class AppContext:
    def __init__(self, runs_dir: str | Path | None = None, model_dirs=(), max_upload_mb: float | None = None,
                 hf_token: str | None = None, untrained_preset: str = "tiny"):
        self.runs_dir = Path(runs_dir or os.environ.get("MINIGPT_APP_RUNS") or "runs/app").resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="minigpt-app-"))  # uploads and zips; inside the temp dir
        self.max_upload_mb = float(max_upload_mb or os.environ.get("MINIGPT_APP_MAX_UPLOAD_MB") or 5)
        self.hf_token = hf_token if hf_token is not None else os.environ.get("HF_TOKEN")
        env_dirs = [d for d in os.environ.get("MINIGPT_APP_MODELS", "").split(os.pathsep) if d.strip()]
        self.registry = ModelRegistry(self.runs_dir, untrained_preset=untrained_preset)
        self.model_dir_errors = []
        for folder in [*model_dirs, *env_dirs]:
            try:
                self.registry.add_dir(folder)
            except ModelError as error:
                logger.warning("not offered: %s", error)
                self.model_dir_errors.append(str(error))
        self.board = JobBoard()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


# ================================================================================================================
# Training: input checks, the worker, the views


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def sanitize_filename(name: str) -> str:
    """A bare, safe file name: no folders, no leading dots, only letters, digits, '.', '_' and '-'."""
    stem = SAFE_NAME.sub("_", Path(str(name)).name).lstrip("._") or "file"
    return stem[:80]


def _check_number(lang, name, value, rule, ok, cast=float):
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value)) from None
    if cast is int and float(value) != number:
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value))
    if not ok(number):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value))
    return number


def collect_uploads(ctx: AppContext, files, lang: str, job_dir: Path) -> Path:
    """Check the uploaded files (.txt, size, UTF-8 text) and join them into one corpus file in the app's own
    temp folder (names sanitized): the training never reads outside the app's folders."""
    paths = [f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None) for f in files or []]
    paths = [p for p in paths if p]
    if not paths:
        raise app_error(lang, msg(lang, "need_files"))
    total = 0
    texts = []
    for raw in paths:
        source = Path(raw)
        shown = sanitize_filename(source.name)
        if source.suffix.lower() != ".txt":
            raise app_error(lang, msg(lang, "not_txt", name=shown))
        size = source.stat().st_size
        total += size
        if size > ctx.max_upload_bytes or total > ctx.max_upload_bytes:
            raise app_error(lang, msg(lang, "too_big", name=shown, size=max(size, total) / 2**20, limit=ctx.max_upload_mb))
        data = source.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise app_error(lang, msg(lang, "not_text", name=shown)) from None
        if "\x00" in text:
            raise app_error(lang, msg(lang, "not_text", name=shown))
        if not text.strip():
            raise app_error(lang, msg(lang, "empty_file", name=shown))
        texts.append(text.strip())
    job_dir.mkdir(parents=True, exist_ok=True)
    name = sanitize_filename(Path(paths[0]).name) if len(paths) == 1 else f"{len(paths)}_files.txt"
    target = job_dir / name
    target.write_text("\n\n".join(texts), encoding="utf-8")
    return target


def prepare_job(ctx: AppContext, lang: str, corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size,
                length_unit, max_steps, epochs, batch_size, learning_rate, block_size, seed) -> TrainingJob:
    """Check every input (gr.Error with what to change) and build the job; nothing runs yet."""
    if corpus_source not in ("builtin", "upload", "hub"):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["corpus_source"], rule="builtin, upload or hub",
                           value=corpus_source))
    if preset not in APP_PRESETS:
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["preset"], rule=" | ".join(APP_PRESETS), value=preset))
    if tokenizer_type not in ("bpe", "char"):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["tokenizer_type"], rule="bpe | char",
                           value=tokenizer_type))
    if length_unit not in ("steps", "epochs"):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["length_unit"], rule="steps | epochs",
                           value=length_unit))
    def between(low, high) -> str:
        return f"entre {low} e {high}" if lang == "pt" else f"between {low} and {high}"

    vocab_size = _check_number(lang, "vocab_size", vocab_size, between(300, 32768), lambda v: 300 <= v <= 32768, int)
    if length_unit == "steps":
        steps = _check_number(lang, "max_steps", max_steps, between(1, 100000), lambda v: 1 <= v <= 100_000, int)
        epochs = 1.0
    else:
        steps = -1
        epochs = _check_number(lang, "epochs", epochs, between(0.01, 100), lambda v: 0.01 <= v <= 100)
    batch_size = _check_number(lang, "batch_size", batch_size, between(1, 512), lambda v: 1 <= v <= 512, int)
    learning_rate = _check_number(lang, "learning_rate", learning_rate, "> 0, <= 1", lambda v: 0 < v <= 1)
    block_size = _check_number(lang, "block_size", block_size, between(8, 1024), lambda v: 8 <= v <= 1024, int)
    seed = _check_number(lang, "seed", seed, ">= 0", lambda v: 0 <= v < 2**32, int)

    run_name = f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}-{tokenizer_type}"
    while (ctx.runs_dir / run_name).exists():
        run_name += "x"
    job_dir = ctx.tmp_dir / "uploads" / run_name
    data = {"block_size": block_size, "preprocessing_num_workers": None}
    corpus = "built-in"
    if corpus_source == "upload":
        train_file = collect_uploads(ctx, files, lang, job_dir)
        data["train_file"] = str(train_file)
        corpus = train_file.name
    elif corpus_source == "hub":
        name = (hub_dataset or "").strip()
        if not name:
            raise app_error(lang, msg(lang, "need_hub"))
        # A Hub name only: never a path (load_dataset would read a local folder or file).
        if not HUB_NAME.match(name) or ".." in name or Path(name).exists():
            raise app_error(lang, msg(lang, "bad_hub", name=name))
        data["dataset_name"] = name
        corpus = name
    output_dir = ctx.runs_dir / run_name
    model_args = ModelArguments(preset=preset, tokenizer_type=tokenizer_type, vocab_size=vocab_size)
    data_args = DataArguments(**data)
    # Built by the worker, not here: creating TrainingArguments resets accelerate's process-wide state, which
    # must not happen while another training runs.
    training_kwargs = dict(
        output_dir=str(output_dir), max_steps=steps, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=max(32, batch_size),
        learning_rate=learning_rate, seed=seed,
        eval_steps=0.125, logging_steps=0.02,  # fractions of the run: 8 evaluations, ~50 points
        save_strategy="no",  # the app keeps the final model only (Stop saves it too)
        report_to="none", dataloader_num_workers=0,
    )
    settings = {"corpus": corpus, "preset": preset, "tokenizer": tokenizer_type, "vocab_size": vocab_size,
                "max_steps": steps, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "block_size": block_size, "seed": seed}
    return TrainingJob(run_name, output_dir, settings, model_args, data_args, training_kwargs,
                       cleanup=job_dir if corpus_source == "upload" else None)


def make_worker(ctx: AppContext):
    def work(job: TrainingJob) -> None:
        try:
            try:
                training_args = MiniGPTTrainingArguments(**job.training_kwargs)
            except ValueError as error:  # TrainingArguments' own checks
                raise SetupError(str(error).splitlines()[0]) from None
            result = run_training(job.model_args, job.data_args, training_args,
                                  callbacks=[JobProgressCallback(job)], stop_event=job.stop_event,
                                  on_sample=job.on_sample)
            snap = job.snapshot()
            info = {**job.settings, "steps": snap.step, "stopped": job.stop_event.is_set(),
                    "eval_loss": result.metrics.get("eval_loss"), "finished_at": time.time()}
            (job.output_dir / APP_RUN_FILE).write_text(json.dumps(info, indent=2))
            entry = ctx.registry.add_run(job.output_dir)
            job.finish(entry.key)
        except (SetupError, CorpusError, HubError, ModelError) as error:
            job.fail(friendly(error))
            shutil.rmtree(job.output_dir, ignore_errors=True)
        except Exception as error:  # a bug or an exhausted machine: say so, keep the app up
            logger.error("training %s failed:\n%s", job.run_name, traceback.format_exc())
            job.fail(f"{type(error).__name__}: {friendly(error).splitlines()[0] if str(error) else ''}")
            shutil.rmtree(job.output_dir, ignore_errors=True)
        finally:
            if job.cleanup is not None:
                shutil.rmtree(job.cleanup, ignore_errors=True)

    return work


def plot_frames(snap: JobSnapshot | None, lang: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Long-format frames (step, value, curve) for the loss and perplexity plots; None before the first point.

    Both curves are always present (a NaN point stands in for one not logged yet): the browser's plot fixes its
    colour domain from the first data it gets, and would never draw a curve that was missing then."""
    if snap is None or not snap.points:
        return None
    m = MESSAGES[lang]
    names = {"train": m["train"], "validation": m["validation"]}
    points = list(snap.points)
    for curve in names:
        if not any(p["curve"] == curve for p in points):
            points.append({"step": points[0]["step"], "curve": curve, "loss": math.nan, "perplexity": math.nan})
    loss = pd.DataFrame([{"step": p["step"], "value": p["loss"], "curve": names[p["curve"]]} for p in points])
    ppl = pd.DataFrame([{"step": p["step"], "value": min(p["perplexity"], 1e6), "curve": names[p["curve"]]}
                        for p in points])
    return loss, ppl


def status_html(snap: JobSnapshot | None, lang: str, note: str | None = None) -> str:
    m = MESSAGES[lang]
    if snap is None:
        return f'<div class="mg-status"><p>{_md_inline(m["no_job"])}</p></div>'
    total = snap.max_steps if snap.max_steps and snap.max_steps > 0 else None
    fraction = 1.0 if snap.state in ("finished", "stopped") else (snap.step / total if total else 0.0)
    elapsed = (snap.ended or time.time()) - snap.started
    state_text = {
        "starting": m["starting"], "running": m["running"], "stopping": m["stopping"],
        "finished": m["finished"].format(run=snap.run_name),
        "stopped": m["stopped"].format(run=snap.run_name, step=snap.step),
        "failed": m["failed"].format(error=snap.error or ""),
    }[snap.state]
    parts = [f'<div class="mg-status mg-{snap.state}">']
    if note:
        parts.append(f'<p class="mg-note">{_md_inline(note)}</p>')
    parts.append(f"<p><b>{_md_inline(state_text)}</b></p>")
    parts.append(f'<div class="mg-bar" role="progressbar" aria-valuenow="{fraction * 100:.0f}" aria-valuemin="0" '
                 f'aria-valuemax="100"><div style="width:{fraction * 100:.1f}%"></div></div>')
    line = [f"{m['step']} {fmt_int(snap.step, lang)}" + (f" {m['of']} {fmt_int(total, lang)}" if total else "")]
    line.append(f"{m['epoch']} {fmt_num(snap.epoch, lang, 2)}")
    line.append(f"{fmt_int(snap.tokens_seen, lang)} {m['tokens_seen']}")
    if snap.tokens_per_second:
        line.append(f"{fmt_int(snap.tokens_per_second, lang)} {m['tokens_s']}")
    line.append(f"{m['elapsed']} {format_duration(elapsed)}")
    if total and 0 < snap.step < total and not snap.done:
        line.append(f"{m['remaining']} ~{format_duration(elapsed / snap.step * (total - snap.step))}")
    parts.append(f"<p>{' · '.join(line)}</p>")
    last = {}
    for p in snap.points:
        last[p["curve"]] = p
    bits = []
    for curve in ("train", "validation"):
        if curve in last:
            p = last[curve]
            bits.append(f"{m[curve]}: {m['loss']} <b>{fmt_num(p['loss'], lang)}</b> "
                        f"({m['perplexity']} {fmt_num(p['perplexity'], lang, 1)})")
    if bits:
        parts.append(f"<p>{' · '.join(bits)}</p>")
    s = snap.settings
    parts.append(f'<p class="mg-settings">{_esc(s["corpus"])} · {s["preset"]} · {s["tokenizer"]} · '
                 f'batch {s["batch_size"]} · lr {s["learning_rate"]:g} · block {s["block_size"]} · '
                 f'seed {s["seed"]}</p></div>')
    return "".join(parts)


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_inline(text: str) -> str:
    """**bold** -> <b>, the rest escaped (status lines are HTML)."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _esc(text))


def samples_html(snap: JobSnapshot | None, lang: str) -> str:
    """The sample text of each evaluation, newest first: prompt in bold, newlines as ⏎, blank runs collapsed."""
    if snap is None or not snap.samples:
        return ""
    m = MESSAGES[lang]

    def shown(prompt: str, text: str) -> str:
        text = re.sub(r"\n\s*\n+", "\n", text).replace("\n", "⏎\n")
        return f"<b>{_esc(prompt)}</b>{_esc(text)}"

    out = ['<div class="mg-samples">']
    for s in reversed(snap.samples[-16:]):
        out.append(f'<div class="mg-sample"><div class="mg-sample-head">{m["step"]} {fmt_int(s["step"], lang)} · '
                   f'{fmt_int(s["tokens_seen"], lang)} {m["tokens_seen"]} · {m["prompt"]} '
                   f'<code>{_esc(s["prompt"])}</code></div>'
                   f'<div class="mg-sample-kind">{m["greedy"]}</div><pre>{shown(s["prompt"], s["greedy"])}</pre>'
                   f'<div class="mg-sample-kind">{m["sampled"]}</div><pre>{shown(s["prompt"], s["sampled"])}</pre>'
                   "</div>")
    out.append("</div>")
    return "".join(out)


def make_zip(ctx: AppContext, folder: Path) -> Path:
    """The finished model as a zip in the app's temp folder (checkpoints and temporary files left out)."""
    target = ctx.tmp_dir / "zips" / f"{folder.name}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{uuid.uuid4().hex[:6]}.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if (path.is_dir() or path.is_symlink() or relative.parts[0].startswith(("checkpoint-", ".saving"))
                    or ".tmp" in path.name):
                continue
            archive.write(path, Path(folder.name) / relative)
    partial.replace(target)
    return target


# ================================================================================================================
# Generation


class TokenStreamer(BaseStreamer):
    """generate() -> a queue of new token ids, one put() per step (the first put is the prompt)."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value):
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self):
        self.queue.put(None)


def stream_generate(model, tokenizer, ids: torch.LongTensor, settings: DecodingSettings,
                    cancel: threading.Event | None = None):
    """Yield the continuation decoded so far, one token at a time: generate() runs in a thread with a streamer;
    beam search (no streamer in transformers) yields once. Setting `cancel` or closing this generator (a
    cancelled request) stops generate() at its next token."""
    closed = threading.Event()
    kwargs = settings.generate_kwargs(tokenizer)
    kwargs.update(attention_mask=torch.ones_like(ids),
                  stopping_criteria=StoppingCriteriaList([StopOnEvent(closed, cancel)]))
    if settings.strategy == "beam":
        with torch.no_grad():
            out = model.generate(ids, **kwargs)
        yield tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return
    streamer = TokenStreamer()
    failure = []

    def run():
        try:
            with torch.no_grad():
                model.generate(ids, streamer=streamer, **kwargs)
        except Exception as error:  # surfaced in the consumer
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=run, name="minigpt-generate", daemon=True)
    worker.start()
    new_ids: list[int] = []
    text = ""
    try:
        while True:
            item = streamer.queue.get(timeout=300)
            if item is None:
                break
            new_ids.extend(item)
            decoded = tokenizer.decode(new_ids, skip_special_tokens=True)
            if decoded.endswith("\ufffd"):  # half a multi-byte character: wait for the rest
                continue
            text = decoded
            yield text
    finally:
        closed.set()
        worker.join(timeout=30)
    if failure:
        raise failure[0]
    final = tokenizer.decode(new_ids, skip_special_tokens=True)
    if final != text:
        yield final


def checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed,
                     num_beams) -> DecodingSettings:
    try:
        settings = DecodingSettings(
            strategy=str(strategy), temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
            repetition_penalty=float(repetition_penalty), max_new_tokens=int(max_new_tokens), seed=int(seed),
            num_beams=int(num_beams),
        )
        return settings.validate()
    except (TypeError, ValueError) as error:
        raise app_error(lang, friendly(error, lang)) from None


def prepare_prompt(lang, tokenizer, model, prompt: str, settings: DecodingSettings) -> torch.LongTensor:
    context = model.config.max_position_embeddings
    try:
        ids = encode_prompt(tokenizer, prompt, context, reserve=1)
    except TeachingError as error:
        raise app_error(lang, friendly(error, lang)) from None
    room = context - ids.shape[1]
    if settings.max_new_tokens > room:
        warn(lang, msg(lang, "clipped", prompt=ids.shape[1], asked=settings.max_new_tokens, context=context,
                       given=room))
        settings.max_new_tokens = room
    return ids.to(model.device)


def get_model(ctx: AppContext, key: str, lang: str = "en"):
    try:
        return ctx.registry.get(key)
    except ModelError as error:
        raise app_error(lang, str(error)) from None


# ================================================================================================================
# The UI

CSS = """
.mg-status { padding: 4px 2px; }
.mg-status p { margin: 4px 0; }
.mg-bar { height: 14px; background: var(--neutral-200, #e5e7eb); border-radius: 7px; overflow: hidden; margin: 6px 0; }
.mg-bar > div { height: 100%; background: linear-gradient(90deg, #f97316, #ea580c); transition: width .4s; }
.mg-finished .mg-bar > div, .mg-stopped .mg-bar > div { background: #16a34a; }
.mg-failed .mg-bar > div { background: #dc2626; }
.mg-note { color: #b45309; }
.mg-settings { color: var(--body-text-color-subdued, #6b7280); font-size: 0.9em; }
.mg-samples { max-height: 460px; overflow-y: auto; }
.mg-sample { border-bottom: 1px solid var(--border-color-primary, #e5e7eb); padding: 6px 0; }
.mg-sample-head { font-weight: 600; font-size: 0.92em; }
.mg-sample-kind { color: var(--body-text-color-subdued, #6b7280); font-size: 0.85em; margin-top: 2px; }
.mg-sample pre { white-space: pre-wrap; word-break: break-word; margin: 2px 0; padding: 4px 8px;
  background: var(--block-background-fill, #f9fafb); border-radius: 4px; font-size: 0.88em; max-height: 9em;
  overflow-y: auto; }
"""


def build_demo(ctx: AppContext | None = None, **context_kwargs) -> gr.Blocks:
    ctx = ctx or AppContext(**context_kwargs)
    work = make_worker(ctx)

    # -- shared helpers -----------------------------------------------------------------------------------------

    def model_updates(lang: str, select_run: str | None = None):
        """New choices for every model dropdown (values kept; the trainer's own session selects its run)."""
        plain = ctx.registry.choices(lang)
        with_latest = ctx.registry.choices(lang, with_latest=True)
        runs = [(e.label(lang), e.key) for e in ctx.registry.runs()]
        pick = {"value": select_run} if select_run else {}
        return (gr.Dropdown(choices=plain, **pick), gr.Dropdown(choices=with_latest),
                gr.Dropdown(choices=with_latest), gr.Dropdown(choices=plain, **pick),
                gr.Dropdown(choices=runs, **pick))

    def seen(snap: JobSnapshot | None) -> str:
        """What a session has drawn: its timer skips a job version that the train stream already showed."""
        return f"{snap.id}:{snap.version}" if snap is not None else ""

    def job_view(snap: JobSnapshot | None, lang: str, note: str | None = None):
        frames = plot_frames(snap, lang)
        m = MESSAGES[lang]
        curve_colors = {m["train"]: "#2563eb", m["validation"]: "#ea580c"}
        if frames is None:
            plots = (gr.skip(), gr.skip())
        else:
            plots = (
                gr.LinePlot(value=frames[0], x_title=m["col_step"], y_title=m["loss"], color_title=m["legend_split"],
                            color_map=curve_colors),
                gr.LinePlot(value=frames[1], x_title=m["col_step"], y_title=m["perplexity"],
                            color_title=m["legend_split"], color_map=curve_colors),
            )
        return (status_html(snap, lang, note), *plots, samples_html(snap, lang))

    # -- handlers -----------------------------------------------------------------------------------------------

    def train(corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size, length_unit, max_steps,
              epochs, batch_size, learning_rate, block_size, seed, request: gr.Request, progress=gr.Progress()):
        """Start a training (one at a time for the whole app) and stream its progress: status (HTML with a
        progress bar), loss and perplexity plots, the sample texts, then the finished run and its zip."""
        lang = request_lang(request)
        job = None
        if not ctx.board.busy():
            job = prepare_job(ctx, lang, corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size,
                              length_unit, max_steps, epochs, batch_size, learning_rate, block_size, seed)
        if job is None or not ctx.board.start(job, work):
            if job is not None and job.cleanup is not None:
                shutil.rmtree(job.cleanup, ignore_errors=True)
            snap = ctx.board.current.snapshot()
            note = msg(lang, "busy", ago=format_duration(time.time() - snap.started))
            warn(lang, note)
            yield (*job_view(snap, lang, note), gr.skip(), gr.skip(), seen(snap))
            return
        version = -1
        snap = job.snapshot()
        while True:
            snap = job.wait(version, timeout=1.0)
            if snap.version != version:
                version = snap.version
                total = snap.max_steps if snap.max_steps and snap.max_steps > 0 else None
                progress((snap.step, total), desc=MESSAGES[lang]["running"], unit="steps")
                if snap.done:
                    break
                yield (*job_view(snap, lang), gr.skip(), gr.skip(), seen(snap))
                time.sleep(0.4)  # at most ~2 updates a second; the job keeps running meanwhile
        if snap.state == "failed":
            yield (*job_view(snap, lang), gr.skip(), gr.skip(), seen(snap))
            raise app_error(lang, msg(lang, "failed", error=snap.error))
        entry = ctx.registry.resolve(snap.entry_key)
        zip_path = make_zip(ctx, Path(entry.path))
        runs = [(e.label(lang), e.key) for e in ctx.registry.runs()]
        yield (*job_view(snap, lang), gr.Dropdown(choices=runs, value=entry.key), str(zip_path), seen(snap))

    def stop(request: gr.Request):
        """Stop the running training at the next step; the model is saved and usable."""
        lang = request_lang(request)
        job = ctx.board.current
        if job is None or not job.active:
            return msg(lang, "nothing_to_stop")
        job.request_stop()
        return msg(lang, "stop_requested")

    def training_status() -> dict:
        """The current (or last) training: state, step, max_steps, losses, samples, the finished model's key."""
        job = ctx.board.current
        if job is None:
            return {"state": "idle"}
        s = job.snapshot()
        last = {}
        for p in s.points:
            last[p["curve"]] = p
        return {"state": s.state, "run": s.run_name, "step": s.step, "max_steps": s.max_steps, "epoch": s.epoch,
                "tokens_seen": s.tokens_seen, "tokens_per_second": s.tokens_per_second,
                "train_loss": last.get("train", {}).get("loss"), "eval_loss": last.get("validation", {}).get("loss"),
                "samples": s.samples[-4:], "model": s.entry_key, "error": s.error, "settings": s.settings,
                "stop_requested_at": s.stop_requested_at}

    def poll(seen_job, seen_models, request: gr.Request):
        """Every visitor's timer: redraw the training panel when the job changed, refresh the model lists when
        a run was added. Unchanged parts are skipped (nothing is sent)."""
        lang = request_lang(request)
        job = ctx.board.current
        outputs = []
        if job is not None:
            snap = job.snapshot()
            key = seen(snap)
            if key != seen_job:
                outputs.extend(job_view(snap, lang))
                seen_job = key
            else:
                outputs.extend([gr.skip()] * 4)
        else:
            outputs.extend([gr.skip()] * 4)
        if ctx.registry.version != seen_models:
            seen_models = ctx.registry.version
            outputs.extend(model_updates(lang))
        else:
            outputs.extend([gr.skip()] * 5)
        return (*outputs, seen_job, seen_models)

    def on_load(request: gr.Request):
        lang = request_lang(request)
        job = ctx.board.current
        snap = job.snapshot() if job is not None else None
        return (*job_view(snap, lang), *model_updates(lang), seen(snap), ctx.registry.version)

    def after_train(request: gr.Request):
        job = ctx.board.current
        snap = job.snapshot() if job is not None else None
        select = snap.entry_key if snap is not None and snap.entry_key else None
        return (*model_updates(request_lang(request), select_run=select), ctx.registry.version)

    def generate(prompt, model=UNTRAINED, strategy=GEN_DEFAULTS["strategy"], temperature=GEN_DEFAULTS["temperature"],
                 top_k=GEN_DEFAULTS["top_k"], top_p=GEN_DEFAULTS["top_p"],
                 repetition_penalty=GEN_DEFAULTS["repetition_penalty"], max_new_tokens=GEN_DEFAULTS["max_new_tokens"],
                 seed=GEN_DEFAULTS["seed"], num_beams=GEN_DEFAULTS["num_beams"], request: gr.Request = None):
        """Continue `prompt` with a model; streams the text (prompt + continuation) token by token."""
        lang = request_lang(request)
        settings = checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens,
                                    seed, num_beams)
        _, lm, tokenizer = get_model(ctx, model, lang)
        ids = prepare_prompt(lang, tokenizer, lm, prompt, settings)
        yield prompt
        for text in stream_generate(lm, tokenizer, ids, settings):
            yield prompt + text

    def compare(prompt, model_a=UNTRAINED, model_b=LATEST, strategy=GEN_DEFAULTS["strategy"],
                temperature=GEN_DEFAULTS["temperature"], top_k=GEN_DEFAULTS["top_k"], top_p=GEN_DEFAULTS["top_p"],
                repetition_penalty=GEN_DEFAULTS["repetition_penalty"], max_new_tokens=GEN_DEFAULTS["max_new_tokens"],
                seed=GEN_DEFAULTS["seed"], num_beams=GEN_DEFAULTS["num_beams"], request: gr.Request = None):
        """The same prompt and settings through two models, side by side (default: untrained vs latest trained)."""
        lang = request_lang(request)
        base = checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens,
                                seed, num_beams)
        sides = []
        texts = ["", ""]
        for index, key in enumerate((model_a, model_b)):
            try:
                entry = ctx.registry.resolve(key)
            except ModelError as error:
                raise app_error(lang, str(error)) from None
            if entry is None:
                warn(lang, msg(lang, "no_trained"))
                texts[index] = msg(lang, "no_trained")
                continue
            _, lm, tokenizer = get_model(ctx, entry.key, lang)
            settings = DecodingSettings(**{k: getattr(base, k) for k in base.__dataclass_fields__})
            ids = prepare_prompt(lang, tokenizer, lm, prompt, settings)
            sides.append((index, lm, tokenizer, ids, settings))
            texts[index] = prompt
        yield tuple(texts)
        updates: queue.Queue = queue.Queue()
        cancel = threading.Event()

        def run(index, lm, tokenizer, ids, settings):
            try:
                for text in stream_generate(lm, tokenizer, ids, settings, cancel):
                    updates.put((index, prompt + text))
            except Exception as error:
                updates.put((index, error))
            finally:
                updates.put((index, None))

        threads = [threading.Thread(target=run, args=side, daemon=True) for side in sides]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                index, item = updates.get(timeout=600)
                if item is None:
                    running -= 1
                    continue
                if isinstance(item, Exception):
                    raise app_error(lang, friendly(item, lang))
                texts[index] = item
                yield tuple(texts)
        finally:
            cancel.set()

    def probabilities(prompt, model=UNTRAINED, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                      n_bars=15, request: gr.Request = None):
        """The next-token distribution before and after repetition penalty -> temperature -> top-k -> top-p."""
        lang = request_lang(request)
        m = MESSAGES[lang]
        _, lm, tokenizer = get_model(ctx, model, lang)
        try:
            view = next_token_distribution(lm, tokenizer, prompt, temperature=float(temperature), top_k=int(top_k),
                                           top_p=float(top_p), repetition_penalty=float(repetition_penalty),
                                           top_n=int(n_bars))
        except (TeachingError, TypeError, ValueError) as error:
            raise app_error(lang, friendly(error, lang)) from None
        labels = [(f"{'✂ ' if not r.kept else ''}{r.rank}. {r.token}") for r in view.rows]
        status = [m["kept"] if r.kept else m["cut"] for r in view.rows]
        before = pd.DataFrame({"token": labels, "p": [r.p_before for r in view.rows], "status": status})
        after = pd.DataFrame({"token": labels, "p": [r.p_after for r in view.rows], "status": status})
        colors = {m["kept"]: "#2563eb", m["cut"]: "#dc2626"}
        top_before = max([r.p_before for r in view.rows] + [1e-9])
        top_after = max([r.p_after for r in view.rows] + [1e-9])
        best = max(view.rows, key=lambda r: r.p_after)
        summary = msg(lang, "probs_summary", kept=fmt_int(view.kept_count, lang), vocab=fmt_int(view.vocab_size, lang),
                      mass=fmt(view.kept_mass, lang, ".1%"), hb=fmt_num(view.entropy_before_bits, lang, 2),
                      ha=fmt_num(view.entropy_after_bits, lang, 2), top=best.token)
        table = pd.DataFrame({
            m["col_rank"]: [r.rank for r in view.rows], m["col_token"]: [r.token for r in view.rows],
            m["col_logit"]: [round(r.logit, 3) for r in view.rows],
            m["col_p_before"]: [round(r.p_before, 5) for r in view.rows],
            m["col_p_after"]: [round(r.p_after, 5) for r in view.rows],
            m["col_kept"]: ["✓" if r.kept else "✂" for r in view.rows],
        })
        return (
            gr.BarPlot(value=before, x="token", y="p", color="status", color_map=colors, sort=labels,
                       y_lim=[0, min(1.0, top_before * 1.15)], y_title=m["probability"], x_title=m["col_token"],
                       color_title=m["legend_cut"]),
            gr.BarPlot(value=after, x="token", y="p", color="status", color_map=colors, sort=labels,
                       y_lim=[0, min(1.0, top_after * 1.15)], y_title=m["probability"], x_title=m["col_token"],
                       color_title=m["legend_cut"]),
            summary,
            table,
        )

    def surprise(text, model=UNTRAINED, request: gr.Request = None):
        """Each token's surprise -log p (cross entropy) as highlighting, and the text's perplexity."""
        lang = request_lang(request)
        m = MESSAGES[lang]
        _, lm, tokenizer = get_model(ctx, model, lang)
        try:
            view = token_surprises(lm, tokenizer, text)
        except TeachingError as error:
            raise app_error(lang, friendly(error, lang)) from None
        summary = msg(lang, "surprise_summary", nats=fmt_num(view.cross_entropy_nats, lang, 3),
                      bits=fmt_num(view.cross_entropy_bits, lang, 2), ppl=fmt_num(view.perplexity, lang, 1),
                      ppl0=fmt_num(view.perplexity, lang, 0), vocab=fmt_int(lm.config.vocab_size, lang),
                      ubits=fmt_num(view.uniform_bits, lang, 1), n=len(view.tokens))
        if view.truncated:
            summary += msg(lang, "truncated", n=len(view.tokens))
        table = pd.DataFrame({
            m["col_position"]: [t.position + 1 for t in view.tokens], m["col_token"]: [t.token for t in view.tokens],
            m["col_prob"]: [round(t.probability, 5) for t in view.tokens],
            m["col_nats"]: [round(t.nats, 3) for t in view.tokens],
            m["col_bits"]: [round(t.bits, 3) for t in view.tokens],
        })
        return view.highlights(), summary, table

    def download(run: str | None = None, request: gr.Request = None):
        """A finished run as a .zip (the model folder without checkpoints)."""
        lang = request_lang(request)
        try:
            entry = ctx.registry.resolve(run or LATEST)
        except ModelError as error:
            raise app_error(lang, str(error)) from None
        if entry is None or entry.kind != "run":
            raise app_error(lang, msg(lang, "no_runs"))
        return str(make_zip(ctx, Path(entry.path)))

    def push(run: str | None = None, repo_id: str = "", request: gr.Request = None):
        """Upload a finished run to a Hub model repository (needs the HF_TOKEN secret)."""
        lang = request_lang(request)
        if not ctx.hf_token:
            raise app_error(lang, msg(lang, "no_token"))
        repo_id = (repo_id or "").strip()
        if not HUB_NAME.match(repo_id):
            raise app_error(lang, msg(lang, "need_repo"))
        try:
            entry = ctx.registry.resolve(run or LATEST)
        except ModelError as error:
            raise app_error(lang, str(error)) from None
        if entry is None or entry.kind != "run":
            raise app_error(lang, msg(lang, "no_runs"))
        from hub import check_hub_access, push_folder

        try:
            check_hub_access(repo_id, ctx.hf_token)
            url = push_folder(entry.path, repo_id, ctx.hf_token)
        except HubError as error:
            raise app_error(lang, str(error)) from None
        return msg(lang, "pushed", url=url)

    def list_models() -> list[dict]:
        """Every model offered: key (pass it as `model`), kind, name, label and summary."""
        return [{"key": e.key, "kind": e.kind, "name": e.name, "label": e.label("en"), **e.summary}
                for e in ctx.registry.entries()]

    # -- layout -------------------------------------------------------------------------------------------------

    plain_choices = ctx.registry.choices("en")
    latest_choices = ctx.registry.choices("en", with_latest=True)
    run_choices = [(e.label("en"), e.key) for e in ctx.registry.runs()]
    strategies = [(T("st_greedy"), "greedy"), (T("st_sample"), "sample"), (T("st_top_k"), "top_k"),
                  (T("st_top_p"), "top_p"), (T("st_beam"), "beam")]

    def decoding_controls(prefix: str):
        with gr.Row():
            strategy = gr.Radio(strategies, value=GEN_DEFAULTS["strategy"], label=T("strategy"),
                                elem_id=f"{prefix}-strategy")
        with gr.Row():
            # 0 is allowed on purpose: temperature 0 or top-k 0 with sampling gets a message that explains why
            temperature = gr.Slider(0.0, 2.0, value=GEN_DEFAULTS["temperature"], step=0.05, label=T("temperature"))
            top_k = gr.Slider(0, 200, value=GEN_DEFAULTS["top_k"], step=1, label=T("top_k"))
            top_p = gr.Slider(0.05, 1.0, value=GEN_DEFAULTS["top_p"], step=0.01, label=T("top_p"))
        with gr.Row():
            repetition_penalty = gr.Slider(1.0, 2.0, value=GEN_DEFAULTS["repetition_penalty"], step=0.05,
                                           label=T("repetition_penalty"))
            max_new_tokens = gr.Slider(1, 256, value=GEN_DEFAULTS["max_new_tokens"], step=1,
                                       label=T("max_new_tokens"))
            seed = gr.Number(GEN_DEFAULTS["seed"], precision=0, minimum=0, label=T("seed"))
            num_beams = gr.Slider(2, 8, value=GEN_DEFAULTS["num_beams"], step=1, label=T("num_beams"))
        return [strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed, num_beams]

    with gr.Blocks(title="MiniGPT") as demo:
        gr.Markdown(T("intro"))
        seen_job = gr.State("")
        seen_models = gr.State(ctx.registry.version)
        with gr.Tabs():
            # ---- Train ----
            with gr.Tab(T("tab_train"), id="train", elem_id="tab-train"):
                gr.Markdown(T("train_help"))
                with gr.Row():
                    with gr.Column(scale=2, min_width=320):
                        corpus_source = gr.Radio([(T("src_builtin"), "builtin"), (T("src_upload"), "upload"),
                                                  (T("src_hub"), "hub")], value="builtin", label=T("corpus_source"))
                        files = gr.File([], file_count="multiple", file_types=[".txt"], label=T("files"), visible=False)
                        hub_dataset = gr.Textbox("", label=T("hub_dataset"), info=T("hub_dataset_info"), visible=False)
                        with gr.Row():
                            preset = gr.Radio(list(APP_PRESETS), value=TRAIN_DEFAULTS["preset"], label=T("preset"))
                            tokenizer_type = gr.Radio([(T("tok_bpe"), "bpe"), (T("tok_char"), "char")],
                                                      value="bpe", label=T("tokenizer_type"))
                        with gr.Accordion(T("hyper"), open=True):
                            length_unit = gr.Radio([(T("unit_steps"), "steps"), (T("unit_epochs"), "epochs")],
                                                   value="steps", label=T("length_unit"))
                            with gr.Row():
                                max_steps = gr.Number(TRAIN_DEFAULTS["max_steps"], precision=0,
                                                      label=T("max_steps"))
                                epochs = gr.Number(TRAIN_DEFAULTS["epochs"], label=T("epochs"),
                                                   visible=False)
                                batch_size = gr.Number(TRAIN_DEFAULTS["batch_size"], precision=0,
                                                       label=T("batch_size"))
                            with gr.Row():
                                learning_rate = gr.Number(TRAIN_DEFAULTS["learning_rate"],
                                                          label=T("learning_rate"), step=0.0001)
                                block_size = gr.Number(TRAIN_DEFAULTS["block_size"], precision=0,
                                                       label=T("block_size"))
                            with gr.Row():
                                vocab_size = gr.Number(TRAIN_DEFAULTS["vocab_size"], precision=0,
                                                       label=T("vocab_size"))
                                train_seed = gr.Number(TRAIN_DEFAULTS["seed"], precision=0,
                                                       label=T("seed"))
                        with gr.Row():
                            start_btn = gr.Button(T("start"), variant="primary", elem_id="start-training")
                            stop_btn = gr.Button(T("stop"), variant="stop", elem_id="stop-training")
                        stop_note = gr.Markdown()
                    with gr.Column(scale=3, min_width=360):
                        status = gr.HTML(f'<div class="mg-status"><p>{_md_inline(UI_EN["no_job"])}</p></div>',
                                         label=T("train_status"), elem_id="train-status")
                        with gr.Row():
                            loss_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("loss_plot"),
                                                    elem_id="loss-plot")
                            ppl_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("ppl_plot"),
                                                   elem_id="ppl-plot")
                        samples = gr.HTML("", label=T("samples"), elem_id="samples")
                        with gr.Accordion(T("trained_models"), open=False):
                            with gr.Row():
                                run_select = gr.Dropdown(run_choices, value=run_choices[0][1] if run_choices else None,
                                                         label=T("run_select"), allow_custom_value=True)
                                download_btn = gr.Button(T("download"))
                            zip_file = gr.File(label=T("zip_file"), interactive=False)
                            with gr.Row(visible=bool(ctx.hf_token)):
                                repo_id = gr.Textbox(label=T("repo_id"))
                                push_btn = gr.Button(T("push"))
                            push_note = gr.Markdown()

            # ---- Generate ----
            with gr.Tab(T("tab_generate"), id="generate", elem_id="tab-generate"):
                gr.Markdown(T("gen_help"))
                gen_model = gr.Dropdown(plain_choices, value=UNTRAINED, label=T("model"), allow_custom_value=True,
                                        elem_id="gen-model")
                gen_prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=2, elem_id="gen-prompt")
                gen_controls = decoding_controls("gen")
                gen_btn = gr.Button(T("generate"), variant="primary", elem_id="generate-btn")
                gen_output = gr.Textbox(label=T("output"), lines=8, interactive=False, elem_id="gen-output")

            # ---- Compare ----
            with gr.Tab(T("tab_compare"), id="compare", elem_id="tab-compare"):
                gr.Markdown(T("cmp_help"))
                with gr.Row():
                    cmp_a = gr.Dropdown(latest_choices, value=UNTRAINED, label=T("model_a"), allow_custom_value=True)
                    cmp_b = gr.Dropdown(latest_choices, value=LATEST, label=T("model_b"), allow_custom_value=True)
                cmp_prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=2)
                cmp_controls = decoding_controls("cmp")
                cmp_btn = gr.Button(T("compare"), variant="primary", elem_id="compare-btn")
                with gr.Row():
                    out_a = gr.Textbox(label=T("output_a"), lines=8, interactive=False)
                    out_b = gr.Textbox(label=T("output_b"), lines=8, interactive=False)

            # ---- Probabilities ----
            with gr.Tab(T("tab_probs"), id="probs", elem_id="tab-probs"):
                gr.Markdown(T("probs_help"))
                prob_model = gr.Dropdown(plain_choices, value=UNTRAINED, label=T("model"), allow_custom_value=True)
                prob_prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=1)
                with gr.Row():
                    prob_temperature = gr.Slider(0.0, 3.0, value=1.0, step=0.05, label=T("temperature"))
                    prob_top_k = gr.Slider(0, 100, value=10, step=1, label=T("top_k"))
                    prob_top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.01, label=T("top_p"))
                    prob_penalty = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label=T("repetition_penalty"))
                    n_bars = gr.Slider(5, 40, value=15, step=1, label=T("n_bars"))
                prob_btn = gr.Button(T("show_probs"), variant="primary", elem_id="probs-btn")
                prob_summary = gr.Markdown()
                with gr.Row():
                    chart_before = gr.BarPlot(x="token", y="p", color="status", label=T("chart_before"),
                                              x_label_angle=-45, elem_id="chart-before")
                    chart_after = gr.BarPlot(x="token", y="p", color="status", label=T("chart_after"),
                                             x_label_angle=-45, elem_id="chart-after")
                with gr.Accordion(T("prob_table"), open=False):
                    prob_table = gr.Dataframe(interactive=False)
                gr.Markdown(T("surprise_help"))
                surprise_text = gr.Textbox(DEFAULT_TEXT, label=T("text"), lines=3)
                surprise_btn = gr.Button(T("measure"), variant="primary", elem_id="surprise-btn")
                surprise_summary = gr.Markdown()
                surprise_out = gr.HighlightedText(label=T("surprise"), show_legend=False, show_inline_category=False,
                                                  elem_id="surprise-out")
                with gr.Accordion(T("prob_table"), open=False):
                    surprise_table = gr.Dataframe(interactive=False)

        timer = gr.Timer(1.0)

        # -- events -------------------------------------------------------------------------------------------------
        model_dropdowns = [gen_model, cmp_a, cmp_b, prob_model, run_select]
        job_outputs = [status, loss_plot, ppl_plot, samples]

        corpus_source.change(lambda s: (gr.File(visible=s == "upload"), gr.Textbox(visible=s == "hub")),
                             corpus_source, [files, hub_dataset], api_visibility="private", queue=False)
        length_unit.change(lambda u: (gr.Number(visible=u == "steps"), gr.Number(visible=u == "epochs")),
                           length_unit, [max_steps, epochs], api_visibility="private", queue=False)

        train_event = start_btn.click(
            train,
            [corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size, length_unit, max_steps, epochs,
             batch_size, learning_rate, block_size, train_seed],
            [*job_outputs, run_select, zip_file, seen_job],
            api_name="train", concurrency_limit=2, concurrency_id="train", show_progress="minimal",
            show_progress_on=[status],
        )
        train_event.then(after_train, None, [*model_dropdowns, seen_models], api_visibility="private",
                         show_progress="hidden")
        stop_btn.click(stop, None, stop_note, api_name="stop", concurrency_limit=None, show_progress="hidden")
        download_btn.click(download, run_select, zip_file, api_name="download", concurrency_limit=2)
        push_btn.click(push, [run_select, repo_id], push_note, api_name="push_to_hub", concurrency_limit=1)
        gr.api(training_status, api_name="training_status", concurrency_limit=None)
        gr.api(list_models, api_name="models", concurrency_limit=None)

        gen_inputs = [gen_prompt, gen_model, *gen_controls]
        gen_btn.click(generate, gen_inputs, gen_output, api_name="generate", concurrency_id="generate",
                      concurrency_limit=GENERATE_CONCURRENCY)
        gen_prompt.submit(generate, gen_inputs, gen_output, api_visibility="private", concurrency_id="generate",
                          concurrency_limit=GENERATE_CONCURRENCY)
        cmp_btn.click(compare, [cmp_prompt, cmp_a, cmp_b, *cmp_controls], [out_a, out_b], api_name="compare",
                      concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
        prob_btn.click(probabilities, [prob_prompt, prob_model, prob_temperature, prob_top_k, prob_top_p,
                                       prob_penalty, n_bars],
                       [chart_before, chart_after, prob_summary, prob_table], api_name="next_token_probabilities",
                       concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
        surprise_btn.click(surprise, [surprise_text, prob_model], [surprise_out, surprise_summary, surprise_table],
                           api_name="surprise", concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)

        timer.tick(poll, [seen_job, seen_models], [*job_outputs, *model_dropdowns, seen_job, seen_models],
                   api_visibility="private", show_progress="hidden", concurrency_limit=None)
        demo.load(on_load, None, [*job_outputs, *model_dropdowns, seen_job, seen_models], api_visibility="private",
                  show_progress="hidden")

    demo.queue(max_size=64, default_concurrency_limit=4)  # the listeners above set their own limits
    demo.minigpt = ctx  # tests and launch() reach the context through the demo
    return demo


def launch_kwargs(ctx: AppContext) -> dict:
    """What launch() needs beyond the Blocks: languages, styling, the upload limit."""
    return dict(i18n=I18N, css=CSS, max_file_size=int(ctx.max_upload_bytes * 2), footer_links=["api", "settings"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MiniGPT's Gradio app (train, generate, compare, probabilities)")
    parser.add_argument("--model", action="append", default=[], metavar="DIR",
                        help="a saved model folder to offer (repeatable); safetensors weights only")
    parser.add_argument("--runs-dir", default=None, help="where trainings are saved (default: runs/app)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"), help="e.g. 0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.INFO)
    ctx = AppContext(runs_dir=args.runs_dir, model_dirs=args.model)
    demo = build_demo(ctx)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(ctx))


if __name__ == "__main__":
    main()
