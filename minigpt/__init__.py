"""MiniGPT's library: corpora, the training pipeline and its callbacks, loading, the model card, the Hub,
teaching helpers, quantization and compiled generation. It imports no gradio (the Space lives in the `space`
package)."""
