"""Understanding model file formats (safetensors first) without trusting them."""
