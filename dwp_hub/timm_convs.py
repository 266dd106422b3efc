"""timm convolution classes that need care, by name (timm need not be imported to recognise them)."""

# timm convs that only add TF-style dynamic 'SAME' padding to nn.Conv2d (their weight is used as is).
SAME_PAD_CLASSES = ("Conv2dSame", "Conv2dSameExport")
# timm convs that apply a standardised function of their weight: a posterior/prior on the stored weight
# would not describe the kernels actually applied, and local reparameterisation does not apply.
WEIGHT_STANDARDISED_CLASSES = ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame")
