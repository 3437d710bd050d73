"""The native model as a Hugging Face folder (`coconutblt export-hf`).

    flatten.py      the model's own source files, flattened into one module
    remote_code.py  the export's Python files: configuration, modeling (flattened + wrapper)
    hf_folder.py    write the folder (config, weights, code, README) and verify it loads

Nothing here is imported by `import coconutblt`; transformers and safetensors are imported
only when an export is written or verified.
"""
