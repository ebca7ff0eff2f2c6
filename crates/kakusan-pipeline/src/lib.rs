//! kakusan-pipeline owns generation: the `Job` type, txt2img and img2img, classifier-free
//! guidance, and writing outputs.
