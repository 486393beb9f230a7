"""The app's languages: the static UI texts (gr.I18n, chosen by the browser), the messages made while running
(in the language of the request's Accept-Language header) and numbers and durations written the reader's way."""

import math
import re

import gradio as gr

from minigpt.number_format import fmt
from minigpt.teaching import default_sampling


# The model sizes (configuration_minigpt.PRESETS) in each language; the settings keep the presets' own names.
PRESET_NAMES = {"en": {}, "pt": {"tiny": "minúsculo", "small": "pequeno", "base": "médio"}}


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
    add("src_machado", "Machado de Assis: two novels (Portuguese, built-in)",
        "Machado de Assis: dois romances (português, embutido)")
    add("src_python", "the Python Language Reference (English, built-in)",
        "a referência da linguagem Python (inglês, embutida)")
    add("src_upload", "my .txt files", "meus arquivos .txt")
    add("src_hub", "a Hugging Face Hub dataset", "um dataset do Hugging Face Hub")
    add("files", "Text files (.txt, UTF-8)", "Arquivos de texto (.txt, UTF-8)")
    add("hub_dataset", "Hub dataset name", "Nome do dataset no Hub")
    add("hub_dataset_info", "e.g. karpathy/tiny_shakespeare (a 'text' column); needs internet",
        "ex.: karpathy/tiny_shakespeare (coluna 'text'); precisa de internet")
    add("preset", "Model size", "Tamanho do modelo")
    for preset in ("tiny", "small", "base"):
        add(f"preset_{preset}", preset, PRESET_NAMES["pt"][preset])
    add("tokenizer_type", "Tokenizer", "Tokenizador")
    add("tok_bpe", "BPE (GPT-2 style)", "BPE (como o GPT-2)")
    add("tok_char", "characters (as in the book)", "caracteres (como no livro)")
    add("vocab_size", "BPE vocabulary size", "Tamanho do vocabulário BPE")
    add("hyper", "Hyperparameters", "Hiperparâmetros")
    add("length_unit", "Train for", "Treinar por")
    add("unit_minutes", "minutes", "minutos")
    add("unit_steps", "steps", "passos")
    add("unit_epochs", "epochs", "épocas")
    add("max_steps", "Steps (optimizer updates)", "Passos (atualizações do otimizador)")
    add("epochs", "Epochs (passes over the corpus)", "Épocas (passadas pelo corpus)")
    add("minutes", "Minutes (the steps are planned to fit, the learning rate's decay included)",
        "Minutos (os passos são planejados para caber, com o decaimento da taxa de aprendizado)")
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
    add("as_gpt2", "GPT-2 format", "Formato GPT-2")
    add("as_gpt2_info", "a plain GPT-2 folder: loads in any transformers without trust_remote_code",
        "uma pasta GPT-2 comum: carrega em qualquer transformers, sem código remoto")
    add("zip_file", "Model files", "Arquivos do modelo")
    add("repo_id", "Hub repository (user/name)", "Repositório no Hub (usuário/nome)")
    add("push", "Push to the Hub", "Enviar ao Hub")
    add("overwrite", "Overwrite if the repository exists", "Sobrescrever se o repositório já existir")
    add("push_help", "Sign in with Hugging Face to push a run to **your own** account (user/name, or just a name).",
        "Entre com a Hugging Face para enviar um treino à **sua própria** conta (usuário/nome, ou só um nome).")
    add("login_help", "Signed in, your runs follow you and you push them to your own account.",
        "Com a sua conta da Hugging Face conectada, seus treinos seguem você e você os envia à sua própria conta.")
    add("no_job", "No training yet. Press **Start training**.", "Nenhum treino ainda. Aperte **Começar o treino**.")
    # Generate
    add("gen_help", "Continue a prompt with a model: the untrained one (random weights) works right away; trained "
        "runs appear here when they finish. **Greedy** always takes the most likely token; **sampling** draws from "
        "the probabilities (a low temperature sharpens them, a high one flattens them); **top-k** draws only among "
        "the k most likely tokens; **top-p** among the fewest tokens whose probabilities add up to p; **beam "
        "search** keeps the best few continuations. The same seed gives the same text. Only the controls that "
        "apply to the chosen strategy are shown.",
        "Continue um prompt com um modelo: o não treinado (pesos aleatórios) funciona desde já; os treinos "
        "aparecem aqui quando terminam. A decodificação **gulosa** (greedy) pega sempre o token mais provável; a "
        "**amostragem** sorteia pelas probabilidades (temperatura baixa as deixa mais concentradas, alta as "
        "achata); **top-k** sorteia só entre os k tokens mais prováveis; **top-p**, só no menor grupo de tokens "
        "cujas probabilidades somam p; a **busca em feixe** (beam search) mantém as melhores continuações. A "
        "mesma semente dá o mesmo texto. Só aparecem os controles que valem para a estratégia escolhida.")
    add("model", "Model", "Modelo")
    add("prompt", "Prompt", "Prompt")
    add("strategy", "Decoding strategy", "Estratégia de decodificação")
    add("st_greedy", "greedy", "gulosa (greedy)")
    add("st_sample", "sampling", "amostragem")
    add("st_top_k", "top-k", "top-k")
    add("st_top_p", "top-p (nucleus)", "top-p (núcleo)")
    add("st_beam", "beam search", "busca em feixe (beam search)")
    add("temperature", "Temperature", "Temperatura")
    add("top_k", "top-k", "top-k")
    add("top_p", "top-p", "top-p")
    add("repetition_penalty", "Repetition penalty (1 = off)", "Penalidade de repetição (1 = desligada)")
    add("max_new_tokens", "Max new tokens", "Máximo de tokens novos")
    add("num_beams", "Beams (beam search)", "Feixes (busca em feixe)")
    add("generate", "Generate", "Gerar")
    add("output", "Text", "Texto")
    add("overfit", "See overfitting", "Ver o sobreajuste")
    add("overfit_info", "a small excerpt of the built-in corpus (12,000 characters), many passes over it and a model "
        "that memorises it: within about two minutes the validation loss turns up while the training loss keeps "
        "falling; the plot marks the turn",
        "um trecho pequeno do corpus embutido (12.000 caracteres), muitas passadas por ele e um modelo que o decora: "
        "em uns dois minutos a perda de validação volta a subir enquanto a de treino continua caindo; o gráfico "
        "marca a virada")
    add("early_stopping", "Stop early and keep the best model", "Parar cedo e guardar o melhor modelo")
    add("early_stopping_info", "ends training once the validation loss has not improved for 3 evaluations, and "
        "keeps the model of the best one (EarlyStoppingCallback, load_best_model_at_end)",
        "encerra o treino quando a perda de validação não melhora por 3 avaliações e guarda o modelo da melhor")
    add("one_step", "One training step, by hand", "Um passo de treino, à mão")
    add("one_step_help", "What the Trainer repeats at every step, written out in plain PyTorch on one batch of the "
        "corpus chosen above, with the model and settings of the form (at most 16 sequences): the forward pass, "
        "the cross entropy of the batch, `loss.backward()`, `optimizer.step()`, and the loss on the same batch "
        "again. The model starts from the same random weights as a training with these settings (step 0).",
        "O que o Trainer repete a cada passo, escrito em PyTorch puro sobre um lote do corpus escolhido acima, com o "
        "modelo e as configurações do formulário (no máximo 16 sequências): a passagem para a frente, a entropia "
        "cruzada do lote, `loss.backward()`, `optimizer.step()` e a perda no mesmo lote de novo. O modelo começa "
        "dos mesmos pesos aleatórios de um treino com essas configurações (passo 0).")
    add("one_step_button", "Take one step", "Dar um passo")
    # Compare
    add("cmp_help", "One prompt, one set of settings, two models side by side. By default: your latest run "
        "**before** training (step 0: its random initial weights, its tokenizer) and **after** it.",
        "Um prompt, um conjunto de configurações, dois modelos lado a lado. Por padrão: o seu treino mais recente "
        "**antes** do treino (passo 0: os pesos aleatórios iniciais, o tokenizador dele) e **depois** dele.")
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
    add("tab_glossary", "Glossary", "Glossário")
    # Gradio's own status words that its pt-BR (and en) translations lack: the page would show the raw key
    add("common.complete", "complete", "concluído")
    add("common.progress", "progress", "progresso")
    add("common.upload", "upload", "enviar")
    add("glossary", _glossary_markdown(GLOSSARY_EN, "Glossary", "Where to see it"),
        _glossary_markdown(GLOSSARY_PT, "Glossário", "Onde ver"))
    return en, pt


# The chapter's glossary: (term, one or two sentences, where the visitor sees it live in this app).
GLOSSARY_EN = [
    ("Cross entropy", ("The loss a language model minimises: minus the log of the probability it gave to the token "
     "that really came next, averaged over tokens (in nats). Zero would mean certainty about every next token."),
     "the **loss** curve in **Train**, and the surprise per token in **Probabilities**"),
    ("Perplexity", ("e raised to the cross entropy: the number of equally likely tokens the model is, on average, "
     "hesitating between. A random model's perplexity is about its vocabulary size."),
     "the **perplexity** plot in **Train**, and the perplexity of a whole text in **Probabilities**"),
    ("Forward pass", ("Running the tokens through the network once, from embeddings to the probabilities of the "
     "next token. Generating text is one forward pass per new token."),
     "**Probabilities**: each bar chart is the result of one forward pass"),
    ("Backpropagation", ("Computing, from the loss, how much each weight should change (its gradient), layer by layer "
     "from the output back to the input; the optimizer then updates the weights."),
     "every **step** of the progress bar in **Train** is a forward pass, a backward pass and an update"),
    ("Batch", ("The sequences processed together in one step; their losses are averaged into one update. Bigger "
     "batches give smoother but costlier steps."),
     "the **batch size** setting in **Train**, and the tokens/s it reaches"),
    ("Epoch", ("One full pass over the training text. Many epochs over a small corpus make the model memorise it: "
     "training loss keeps falling while validation loss stops improving (overfitting)."),
     "the **epoch** counter beside the progress bar in **Train**, and the gap between the two loss curves"),
    ("Sampling", ("Choosing the next token at random according to the model's probabilities, instead of always the "
     "most likely one (greedy). Temperature, top-k and top-p reshape or cut the distribution first."),
     "the strategies in **Generate** and **Compare**, and the kept tokens in **Probabilities**"),
    ("Checkpoint", ("A saved copy of the model's weights and settings (here safetensors, a config and the tokenizer) "
     "that can be loaded again to generate or to continue training."),
     "**Download as .zip** under *Trained models* in **Train**; every trained model in the model lists is a "
     "checkpoint"),
]
GLOSSARY_PT = [
    ("Entropia cruzada", ("A perda que um modelo de linguagem minimiza: menos o log da probabilidade que ele deu ao "
     "token que de fato veio a seguir, em média sobre os tokens (em nats). Zero seria certeza sobre cada token."),
     "a curva de **perda** em **Treinar**, e a surpresa por token em **Probabilidades**"),
    ("Perplexidade", ("e elevado à entropia cruzada: o número de tokens igualmente prováveis entre os quais o modelo "
     "hesita, em média. Um modelo aleatório tem perplexidade próxima do tamanho do vocabulário."),
     "o gráfico de **perplexidade** em **Treinar**, e a perplexidade de um texto inteiro em **Probabilidades**"),
    ("Propagação direta (forward pass)", ("Passar os tokens uma vez pela rede, dos embeddings até as "
     "probabilidades do próximo token. Gerar texto é uma propagação direta por token novo."),
     "**Probabilidades**: cada gráfico de barras é o resultado de uma propagação direta"),
    ("Retropropagação (backpropagation)", ("Calcular, a partir da perda, quanto cada peso deve mudar (o gradiente), "
     "camada por camada, da saída de volta à entrada; o otimizador então atualiza os pesos."),
     ("cada **passo** da barra de progresso em **Treinar** é uma propagação direta, uma retropropagação e uma "
     "atualização dos pesos")),
    ("Lote (batch)", ("As sequências processadas juntas em um passo; suas perdas viram uma média e uma única "
     "atualização. Lotes maiores dão passos mais estáveis, porém mais caros."),
     "o campo **tamanho do lote** em **Treinar**, e os tokens/s que ele alcança"),
    ("Época", ("Uma passada completa pelo texto de treino. Muitas épocas sobre um corpus pequeno fazem o modelo "
     "decorá-lo: a perda de treino continua caindo enquanto a de validação para de melhorar (sobreajuste)."),
     "o contador de **épocas** ao lado da barra de progresso em **Treinar**, e a distância entre as duas curvas"),
    ("Amostragem", ("Escolher o próximo token ao acaso, segundo as probabilidades do modelo, em vez de sempre o mais "
     "provável (decodificação gulosa, greedy). Temperatura, top-k e top-p remodelam ou cortam a distribuição "
     "antes."),
     "as estratégias em **Gerar** e **Comparar**, e os tokens mantidos em **Probabilidades**"),
    ("Checkpoint", ("Uma cópia salva dos pesos e das configurações do modelo (aqui: safetensors, uma config e o "
     "tokenizador) que pode ser carregada de novo para gerar ou para continuar o treino."),
     "**Baixar como .zip** em *Modelos treinados*, na aba **Treinar**; cada modelo treinado que aparece nas listas "
     "de modelos é um checkpoint"),
]


def _glossary_markdown(entries, title: str, where: str) -> str:
    return f"## {title}\n\n" + "\n\n".join(
        f"**{term}**. {text} *{where}:* {place}." for term, text, place in entries
    )


UI_EN, UI_PT = _ui_texts()
I18N = gr.I18n(en=UI_EN, **{"pt-BR": UI_PT, "pt": UI_PT})
T = I18N  # T("key") -> a translation key the browser resolves

MESSAGES = {
    "en": {
        "busy": "A training is already running (started {ago} ago): its progress is shown here. Only one training "
                "runs at a time; start yours when it ends.",
        "queued": "In line: you are number **{position}**; your training starts in about {wait}.",
        "line_full": "The line is full ({n} trainings waiting). Try again in a few minutes.",
        "already_in_line": "You already have a training in line or running: wait for it, or press Stop first.",
        "left_line": "You left the line.",
        "not_yours": "The training that is running belongs to another visitor: only they can stop it.",
        "others_training": "Another visitor's training is running (its text and samples are theirs); "
                           "{waiting} waiting in line.",
        "over_memory": "These settings need about {need:.1f} GB of memory; this Space allows {limit:g} GB "
                       "(MINIGPT_APP_MAX_MEMORY_GB). Lower {what}.",
        "time_budget": "Stopped at the time limit of {minutes:g} minutes per training (MINIGPT_APP_MAX_MINUTES).",
        "killed": "the training process ended unexpectedly (exit code {code}), most likely out of memory; "
                  "the app is fine. Try smaller settings.",
        "err_left": "you left the line", "err_shutdown": "the app was shut down",
        "err_stopped_early": "stopped before training began: no model was saved",
        "time_budget_data": "preparing the data took longer than the time limit of {minutes} minutes per training "
                            "(MINIGPT_APP_MAX_MINUTES): no model was saved. Use a smaller text.",
        "client_busy": "Your network address already has {n} trainings in line or running (the limit per address): "
                       "wait for one to end.",
        "runs_full": "This app keeps at most {n} trained models, and none is old enough (an hour) to make room for "
                     "yours: try again later.",
        "client_queue_full": "{n} requests from your network address are already waiting: wait for them to end.",
        "generations_visitor": "You already have {n} generations running: wait for one to end.",
        "generations_client": "Your network address already has {n} generations running: wait for one to end.",
        "upload_needs_length": "An upload must state its size (Content-Length).",
        "upload_too_big": "An upload may hold at most {limit:g} MB (per file and in total). Upload a smaller text.",
        "uploads_full": "The app's room for uploads ({limit:g} MB, all visitors together) is full: try again in "
                        "{minutes} minutes.",
        "upload_gone": "{name}: the upload is gone (an upload is kept a few minutes until a training takes it). "
                       "Choose the file again.",
        "unbroken": "{name} has more than {limit} characters in a row without a space or line break (or of spaces): "
                    "the BPE tokenizer would take many minutes on it. Add line breaks, or choose the character "
                    "tokenizer.",
        "too_long": "{what} has {n} characters; the limit is {limit}. Shorten it.",
        "request_too_large": "Request too large: the limit is {limit} kB. Send a shorter text.",
        "sign_in": "Sign in with Hugging Face (the button at the top of the page) to push to your own account.",
        "not_your_namespace": "{repo} is not yours: push to {user}/<name>.",
        "repo_exists": "{repo} already exists on the Hub: tick “overwrite” to replace its files, or choose another "
                       "name.",
        "hub_unreachable": "Cannot reach the Hugging Face Hub ({error}): check the token and the network.",
        "push_failed": "Pushing to {repo} failed; the run is still here. Details: {error}",
        "no_gpt2_form": "This run has no GPT-2 form: {error}",
        "starting": "Preparing the corpus, the tokenizer and the model...",
        "running": "Training",
        "stopping": "Stopping after the current step; the model keeps what it learned...",
        "finished": "Finished: the model is saved as **{run}** and is now in every model list.",
        "stopped": "Stopped at step {step}: the model is saved as **{run}** (usable) and is now in every model list.",
        "failed": "Training failed: {error}",
        "no_job": "No training yet. Press **Start training**.",
        "step": "step", "of": "of", "epoch": "epoch", "tokens_seen": "tokens seen", "tokens_s": "tokens/s",
        "train": "train", "validation": "validation", "loss": "loss", "perplexity": "perplexity",
        "elapsed": "elapsed", "remaining": "left", "greedy": "greedy",
        "settings_line": "{corpus} · model {preset} · tokenizer {tokenizer} · batch {batch} · learning rate "
                         "{lr} · block {block} · seed {seed}",
        "builtin": "built-in", "uploaded": "uploaded text", "tok_bpe": "BPE", "tok_char": "characters",
        "nothing_to_stop": "No training is running.",
        "stop_requested": "Stop requested: training ends after the current step and saves the model.",
        "stop_preparing": "Stopped while preparing the data: no model is saved.",
        "need_files": "Choose one or more .txt files to upload, or pick another corpus.",
        "preparing_data": "Preparing the corpus: {stage}, {done}{total} MB, {rate} MB/s",
        "label_untrained": "untrained: random weights, {corpus} tokenizer ({size})", "label_val_loss": "val loss {loss}",
        "label_pretrained": "pre-trained GPT-2: {name} ({size} parameters)",
        "facts_untrained": "**{name}**: {size} parameters, random weights: trained on no text at all ({corpus} "
                           "tokenizer).",
        "label_initial": "{name}: before training (step 0)",
        "overfit_builtin_only": "See overfitting trains on an excerpt of a built-in corpus: choose Machado de Assis "
                                "or the Python Language Reference.",
        "excerpt_of": "an excerpt of {corpus}",
        "turn": "lowest validation loss",
        "turn_note": "<b>Overfitting:</b> the validation loss was lowest at step {step} and has risen since, while "
                     "the training loss kept falling: the model is memorising its training text.",
        "one_step_builtin_only": "One step by hand works on a built-in corpus: choose Machado de Assis or the "
                                 "Python Language Reference above.",
        "os_forward": "<b>1. Forward pass.</b> A batch of {batch} sequences × {tokens} tokens goes through the "
                      "model: out comes a score (logit) for each of the {vocab} tokens of the vocabulary, at every "
                      "position. A few positions of the first sequence:",
        "os_loss": "<b>2. Cross entropy of the batch:</b> {loss} nats/token, by hand "
                   "(<code>F.cross_entropy</code> of the logits against the next tokens); the model's own loss: "
                   "{model_loss}; a uniform guess, ln V: {uniform}.",
        "os_backward": "<b>3. <code>loss.backward()</code></b> gives every weight its gradient: the direction in "
                       "which the loss grows. Total norm {total}, clipped to {clip} (max_grad_norm) as the "
                       "Trainer does.",
        "os_update": "<b>4. <code>optimizer.step()</code></b> (AdamW, learning rate {lr}: the peak; in training "
                     "the warmup starts lower) moves every weight against its gradient. Per layer:",
        "os_after": "<b>5. The same batch again:</b> loss {loss} → {after}. Training repeats this step with a new "
                    "batch each time; the Trainer's first step gives the same loss (tests/test_one_step.py).",
        "facts_initial": "**{name}, step 0**: {size} parameters, the random weights this run started from, with "
                         "its tokenizer ({corpus}).",
        "label_latest_initial": "before training (step 0): your latest run ({name})",
        "label_latest_initial_none": "before training (step 0): your latest run (none yet)",
        "no_trained_side": "No trained model yet: train one in the Train tab.",
        "facts_run": "**{name}**: {size} parameters, trained on {tokens} tokens ({corpus}).",
        "facts_pretrained": "**{name}**: {size} parameters, pre-trained on {data}.",
        "facts_unknown_data": "a corpus named in its model card",
        "label_stopped": "stopped early", "label_dir": "dir", "label_latest": "after training: your latest run",
        "label_latest_none": "after training: your latest run (none yet)",
        "need_hub": "Type a Hub dataset name such as karpathy/tiny_shakespeare.",
        "bad_hub": "{name!r} is not a Hub dataset name: use owner/name (letters, digits, - _ .).",
        "not_txt": "{name}: only .txt files can be uploaded (plain UTF-8 text).",
        "too_big": "{name} is {size:.1f} MB: the limit is {limit:g} MB per file and in total. Upload a smaller text.",
        "not_text": "{name} is not a text file (it is not UTF-8 or holds binary data). Save it as UTF-8 text.",
        "empty_file": "{name} holds no text.",
        "bad_value": "{what} must be {rule}; got {value}.",
        "setup_error": "Cannot start: {error}",
        "clipped": "The prompt ({prompt} tokens) + {asked} new tokens exceed the context of {context}: "
                   "generating {given} tokens.",
        "no_token": "Pushing needs a Hugging Face token: set HF_TOKEN or run `hf auth login` on this machine.",
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
        "queued": "Na fila: você é o número **{position}**; seu treino começa em cerca de {wait}.",
        "line_full": "A fila está cheia ({n} treinos esperando). Tente de novo em alguns minutos.",
        "already_in_line": "Você já tem um treino na fila ou rodando: espere por ele, ou aperte Parar antes.",
        "left_line": "Você saiu da fila.",
        "not_yours": "O treino que está rodando é de outro visitante: só ele pode pará-lo.",
        "others_training": "Um treino de outro visitante está rodando (o texto e as amostras são dele); "
                           "{waiting} esperando na fila.",
        "over_memory": "Essas configurações precisam de cerca de {need:.1f} GB de memória; este Space permite "
                       "{limit:g} GB (MINIGPT_APP_MAX_MEMORY_GB). Diminua {what}.",
        "time_budget": "Parado no limite de {minutes:g} minutos por treino (MINIGPT_APP_MAX_MINUTES).",
        "killed": "o processo de treino terminou inesperadamente (código {code}), provavelmente por falta de "
                  "memória; o app continua de pé. Tente configurações menores.",
        "err_left": "você saiu da fila", "err_shutdown": "o app foi desligado",
        "err_stopped_early": "parado antes de o treino começar: nenhum modelo foi salvo",
        "time_budget_data": "preparar os dados levou mais que o limite de {minutes} minutos por treino "
                            "(MINIGPT_APP_MAX_MINUTES): nenhum modelo foi salvo. Use um texto menor.",
        "client_busy": "Seu endereço de rede já tem {n} treinos na fila ou rodando (o limite por endereço): espere "
                       "um terminar.",
        "runs_full": "Este app guarda no máximo {n} modelos treinados, e nenhum é antigo o bastante (uma hora) para "
                     "dar lugar ao seu: tente mais tarde.",
        "client_queue_full": "{n} pedidos do seu endereço de rede já estão esperando: espere que terminem.",
        "generations_visitor": "Você já tem {n} gerações rodando: espere uma terminar.",
        "generations_client": "Seu endereço de rede já tem {n} gerações rodando: espere uma terminar.",
        "upload_needs_length": "Um envio precisa informar o tamanho (Content-Length).",
        "upload_too_big": "Um envio pode ter no máximo {limit:g} MB (por arquivo e no total). Envie um texto menor.",
        "uploads_full": "O espaço do app para envios ({limit:g} MB, todos os visitantes juntos) está cheio: tente "
                        "de novo em {minutes} minutos.",
        "upload_gone": "{name}: o envio não existe mais (um envio fica guardado alguns minutos até um treino "
                       "usá-lo). Escolha o arquivo de novo.",
        "unbroken": "{name} tem mais de {limit} caracteres seguidos sem espaço nem quebra de linha (ou só de "
                    "espaços): o tokenizador BPE levaria muitos minutos nele. Acrescente quebras de linha, ou "
                    "escolha o tokenizador de caracteres.",
        "too_long": "{what} tem {n} caracteres; o limite é {limit}. Encurte-o.",
        "request_too_large": "Pedido grande demais: o limite é {limit} kB. Envie um texto mais curto.",
        "sign_in": "Entre com a Hugging Face (o botão no alto da página) para enviar à sua própria conta.",
        "not_your_namespace": "{repo} não é seu: envie para {user}/<nome>.",
        "repo_exists": "{repo} já existe no Hub: marque “sobrescrever” para substituir os arquivos, ou escolha "
                       "outro nome.",
        "hub_unreachable": "Não foi possível falar com o Hub da Hugging Face ({error}): confira o token e a rede.",
        "push_failed": "O envio para {repo} falhou; o treino continua aqui. Detalhes: {error}",
        "no_gpt2_form": "Este treino não tem forma GPT-2: {error}",
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
        "elapsed": "decorrido", "remaining": "faltam", "greedy": "gulosa (greedy)",
        "settings_line": "{corpus} · modelo {preset} · tokenizador {tokenizer} · lote {batch} · taxa de "
                         "aprendizado {lr} · bloco {block} · semente {seed}",
        "builtin": "embutido", "uploaded": "texto enviado", "tok_bpe": "BPE", "tok_char": "caracteres",
        "nothing_to_stop": "Nenhum treino está rodando.",
        "stop_requested": "Parada pedida: o treino termina depois do passo atual e salva o modelo.",
        "stop_preparing": "Parado durante a preparação dos dados: nenhum modelo é salvo.",
        "need_files": "Escolha um ou mais arquivos .txt para enviar, ou outro corpus.",
        "need_hub": "Digite o nome de um dataset do Hub, como karpathy/tiny_shakespeare.",
        "bad_hub": "{name!r} não é um nome de dataset do Hub: use dono/nome (letras, dígitos, - _ .).",
        "not_txt": "{name}: só arquivos .txt podem ser enviados (texto puro em UTF-8).",
        "too_big": "{name} tem {size:.1f} MB: o limite é {limit:g} MB por arquivo e no total. Envie um texto menor.",
        "not_text": "{name} não é um arquivo de texto (não é UTF-8 ou tem dados binários). Salve-o como texto UTF-8.",
        "empty_file": "{name} não tem texto.",
        "bad_value": "{what} deve ser {rule}; veio {value}.",
        "setup_error": "Não foi possível começar: {error}",
        "clipped": "O prompt ({prompt} tokens) + {asked} tokens novos passam do contexto de {context}: "
                   "gerando {given} tokens.",
        "no_token": "Enviar ao Hub precisa de um token da Hugging Face: defina HF_TOKEN ou rode `hf auth login` nesta máquina.",
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
        "preparing_data": "Preparando o corpus: {stage}, {done}{total} MB, {rate} MB/s",
        "label_untrained": "não treinado: pesos aleatórios, tokenizador de {corpus} ({size})", "label_val_loss": "perda val. {loss}",
        "label_pretrained": "GPT-2 pré-treinado: {name} ({size} parâmetros)",
        "facts_untrained": "**{name}**: {size} parâmetros, pesos aleatórios: não treinou em texto nenhum "
                           "(tokenizador de {corpus}).",
        "label_initial": "{name}: antes do treino (passo 0)",
        "overfit_builtin_only": "Ver o sobreajuste treina num trecho de um corpus embutido: escolha Machado de Assis "
                                "ou a referência da linguagem Python.",
        "excerpt_of": "um trecho de {corpus}",
        "turn": "menor perda de validação",
        "turn_note": "<b>Sobreajuste:</b> a perda de validação foi a menor no passo {step} e subiu desde então, "
                     "enquanto a de treino continuou caindo: o modelo está decorando o texto de treino.",
        "one_step_builtin_only": "O passo à mão funciona com um corpus embutido: escolha Machado de Assis ou a "
                                 "referência da linguagem Python acima.",
        "os_forward": "<b>1. Passagem para a frente.</b> Um lote de {batch} sequências × {tokens} tokens passa pelo "
                      "modelo: sai uma pontuação (logit) para cada um dos {vocab} tokens do vocabulário, em cada "
                      "posição. Algumas posições da primeira sequência:",
        "os_loss": "<b>2. Entropia cruzada do lote:</b> {loss} nats/token, à mão (<code>F.cross_entropy</code> "
                   "dos logits contra os próximos tokens); a perda do próprio modelo: {model_loss}; um chute "
                   "uniforme, ln V: {uniform}.",
        "os_backward": "<b>3. <code>loss.backward()</code></b> dá a cada peso o seu gradiente: a direção em que a "
                       "perda cresce. Norma total {total}, cortada em {clip} (max_grad_norm), como o Trainer faz.",
        "os_update": "<b>4. <code>optimizer.step()</code></b> (AdamW, taxa de aprendizado {lr}: a de pico; no "
                     "treino o aquecimento começa mais baixo) move cada peso contra o seu gradiente. Por camada:",
        "os_after": "<b>5. O mesmo lote de novo:</b> perda {loss} → {after}. O treino repete esse passo, cada vez "
                    "com um lote novo; o primeiro passo do Trainer dá a mesma perda (tests/test_one_step.py).",
        "facts_initial": "**{name}, passo 0**: {size} parâmetros, os pesos aleatórios com que este treino começou, "
                         "com o tokenizador dele ({corpus}).",
        "label_latest_initial": "antes do treino (passo 0): seu treino mais recente ({name})",
        "label_latest_initial_none": "antes do treino (passo 0): seu treino mais recente (nenhum ainda)",
        "no_trained_side": "Ainda não há modelo treinado: treine um na aba Treinar.",
        "facts_run": "**{name}**: {size} parâmetros, treinado em {tokens} tokens ({corpus}).",
        "facts_pretrained": "**{name}**: {size} parâmetros, pré-treinado em {data}.",
        "facts_unknown_data": "um corpus descrito no seu model card",
        "label_stopped": "interrompido", "label_dir": "pasta", "label_latest": "depois do treino: seu treino mais recente",
        "label_latest_none": "depois do treino: seu treino mais recente (nenhum ainda)",
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

# The one-step panel's column names, each beside its translation
for _key, _en, _pt in (("os_read", "the model read …", "o modelo leu …"),
                       ("os_target", "true next token", "próximo token de verdade"),
                       ("os_logit", "its logit", "logit dele"), ("os_p", "its probability", "probabilidade dele"),
                       ("os_top", "the model's top guesses", "palpites do modelo"), ("os_layer", "layer", "camada"),
                       ("os_grad", "gradient norm", "norma do gradiente"),
                       ("os_moved", "‖Δw‖ (how far it moved)", "‖Δw‖ (quanto andou)"),
                       ("os_relative", "‖Δw‖ / ‖w‖", "‖Δw‖ / ‖w‖")):
    MESSAGES["en"][_key], MESSAGES["pt"][_key] = _en, _pt

# A setting's bound (minigpt.arguments.Bound.words) in words; a choice's (OneOf) as "a | b".
RULES = {
    "en": {"between": "between {low} and {high}", "positive": "a positive number", "at_least": "at least {low}",
           "above": "above {low}", "in": "in {interval}"},
    "pt": {"between": "entre {low} e {high}", "positive": "um número positivo", "at_least": "pelo menos {low}",
           "above": "maior que {low}", "in": "em {interval}"},
}

# The stages of minigpt.data_progress's reports (the tokenizer's training, the tokenizing of each split).
DATA_STAGES = {
    "en": {"training the tokenizer": "training the tokenizer", "tokenizing train": "tokenizing the training text",
           "tokenizing validation": "tokenizing the validation text"},
    "pt": {"training the tokenizer": "treinando o tokenizador", "tokenizing train": "tokenizando o texto de treino",
           "tokenizing validation": "tokenizando o texto de validação"},
}

WHAT = {  # parameter names in messages
    "en": {"max_steps": "Steps", "epochs": "Epochs", "minutes": "Minutes", "batch_size": "Batch size",
           "learning_rate": "Learning rate",
           "block_size": "Block size", "vocab_size": "Vocabulary size", "seed": "Seed", "preset": "Model size",
           "tokenizer_type": "Tokenizer", "corpus_source": "Corpus", "length_unit": "Train for", "prompt": "The prompt", "text": "The text",
           "repo_id": "The repository name"},
    "pt": {"max_steps": "Passos", "epochs": "Épocas", "minutes": "Minutos", "batch_size": "Tamanho do lote",
           "learning_rate": "Taxa de aprendizado", "block_size": "Tamanho do bloco",
           "vocab_size": "Tamanho do vocabulário", "seed": "Semente", "preset": "Tamanho do modelo",
           "tokenizer_type": "Tokenizador", "corpus_source": "Corpus", "length_unit": "Treinar por", "prompt": "O prompt", "text": "O texto",
           "repo_id": "O nome do repositório"},
}


# What the visitor sees first, by language: the built-in corpus of that language and a prompt that fits it.
VISITOR_CORPUS = {"pt": "machado", "en": "python-reference"}
CORPUS_SHORT = {  # the built-in corpora, by language
    "en": {"machado": "Machado de Assis", "python-reference": "Python Language Reference"},
    "pt": {"machado": "Machado de Assis", "python-reference": "Referência da Linguagem Python"},
}
VISITOR_PROMPT = {"pt": "Era uma vez", "en": "The value of"}
# The text whose surprise the Probabilities tab measures first: a sentence of that language's built-in corpus.
VISITOR_TEXT = {"pt": "Uma noite destas, vindo da cidade para o Engenho Novo, encontrei no trem da Central um rapaz "
                      "aqui do bairro, que eu conheço de vista e de chapéo.",
                "en": "The if statement is used for conditional execution."}
BUILTIN_MARK = " (built-in)"  # minigpt.corpus.describe_source's name of a built-in corpus ends so
UPLOADED_CORPUS = "uploaded text"  # what a run trained on a visitor's upload records as its corpus (no file name)

# The pre-trained GPT-2s the app suggests (default: one per language), with what their model cards say.
PRETRAINED_SUGGESTED = ("pierreguillou/gpt2-small-portuguese", "gpt2")
PRETRAINED_PARAMETERS = {"gpt2": 124_000_000, "pierreguillou/gpt2-small-portuguese": 124_000_000}
PRETRAINED_DATA = {
    "gpt2": {"en": "WebText, about 40 GB of English web pages (billions of tokens)",
             "pt": "WebText, cerca de 40 GB de páginas da web em inglês (bilhões de tokens)"},
    "pierreguillou/gpt2-small-portuguese": {
        "en": "GPT-2's WebText (40 GB, English), then 1.28 GB of Portuguese Wikipedia",
        "pt": "o WebText do GPT-2 (40 GB, inglês) e depois 1,28 GB da Wikipédia em português"},
}


def format_parameters(count: int | None, lang: str) -> str:
    """124000000 -> '124M'; 812345 -> '0.81M' ('0,81M' in Portuguese)."""
    if not count:
        return "?"
    return fmt(count / 1e6, lang, ".0f" if count >= 1e7 else ".2f") + "M"


def preset_shown(preset: str, lang: str) -> str:
    return PRESET_NAMES[lang].get(preset, preset)


def corpus_shown(corpus: str, lang: str) -> str:
    """A run's corpus name (minigpt.corpus.describe_source) in the reader's words: "machado (embutido)"."""
    if corpus.endswith(BUILTIN_MARK):
        return f"{corpus[:-len(BUILTIN_MARK)]} ({MESSAGES[lang]['builtin']})"
    return MESSAGES[lang]["uploaded"] if corpus == UPLOADED_CORPUS else corpus


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


def rule_text(bound, lang: str) -> str:
    """What a setting's bound allows, in the reader's language (numbers written their way)."""
    kind, values = bound.words()
    if lang == "pt":
        values = {k: v.replace(".", ",") if k != "interval" else v.replace(", ", "; ").replace(".", ",")
                  for k, v in values.items()}
    return RULES[lang][kind].format(**values)


def sampling_text(lang: str) -> str:
    """How the samples shown while training are drawn (minigpt.teaching.default_sampling), in the reader's words."""
    s = default_sampling()
    words = {"en": ("sampled", "temperature", "repetition penalty"),
             "pt": ("amostrado", "temperatura", "penalidade de repetição")}[lang]
    return (f"{words[0]} ({words[1]} {fmt(s['temperature'], lang, 'g')}, top-k {s['top_k']}, "
            f"top-p {fmt(s['top_p'], lang, 'g')}, {words[2]} {fmt(s['repetition_penalty'], lang, 'g')})")


def app_error(lang: str, text: str) -> gr.Error:
    """A visible error message in the reader's language; the app stays up."""
    return gr.Error(text, title="Erro" if lang == "pt" else "Error", print_exception=False)


def warn(lang: str, text: str) -> None:
    """A toast in the reader's language (the request goes on)."""
    gr.Warning(text, title="Aviso" if lang == "pt" else "Warning")


def friendly(error: Exception, lang: str = "en") -> str:
    """A library message for the app: in Portuguese when minigpt.teaching named the problem, and without
    command-line flags ('--block_size' reads 'block size')."""
    if lang == "pt" and getattr(error, "key", "") in TEACHING_PT:
        return TEACHING_PT[error.key].format(**error.values)
    return re.sub(r"--(\w+)", lambda m: m.group(1).replace("_", " "), str(error)).strip()


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"


def fmt_int(value: int, lang: str) -> str:
    return fmt(int(value), lang, ",d")


def fmt_num(value: float | None, lang: str, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt(value, lang, f",.{digits}f")

# Gradio's sign-in button takes a plain string, not a translation key (its script compares its label with the
# value given here): one button per language, the page shows the visitor's (app.py).
LOGIN_LABELS = {"pt": "Entrar com Hugging Face", "en": "Sign in with Hugging Face"}
LOGOUT_LABELS = {"pt": "Sair ({})", "en": "Log out ({})"}
