"""Interpretation engine: one module per method family, one verb per method.

methods (THE method table: every attribution method's name, label, function, layer need,
sign and input kinds; the window, the CLI and the sanity check read it; adding a method is
one module, e.g. grad_x_input, one entry there and its test).

hooks (activation capture), maps (upsampling, kept apart from the methods), cam (CAM,
Grad-CAM, Grad-CAM++), saliency (gradient, SmoothGrad, Integrated Gradients), auralise
(filter masks on the original STFT), deconv (deconvnet to input space), dream (deep
dream generator), similarity (layer-wise similarity of feature maps), kernels (kernel
statistics from the weights), activity (per-unit energies and dead units on inputs),
sanity (model-weight randomisation check), flip (input optimisation that flips a
classification). MIDI: midi_saliency, midi_flip.
"""
