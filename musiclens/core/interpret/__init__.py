"""Interpretation engine: one module per method family, one verb per method.

hooks (activation capture), maps (upsampling, kept apart from the methods), cam (CAM,
Grad-CAM, Grad-CAM++), saliency (gradient, SmoothGrad, Integrated Gradients), auralise
(filter masks on the original STFT), deconv (deconvnet to input space), dream (deep
dream generator), similarity (layer-wise similarity of feature maps), kernels (kernel
statistics from the weights), activity (per-unit energies and dead units on inputs),
sanity (model-weight randomisation check), flip (input optimisation that flips a
classification). MIDI: midi_saliency, midi_flip.
"""
