"""MiniGPT's Gradio Space: texts (pt + en), state, the training queue and worker, one module per tab."""
