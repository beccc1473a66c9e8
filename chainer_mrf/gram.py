"""Neural style's term (Gatys et al. 2016), the method CNNMRF is defined against (docs/algorithm.md,
"Neural style (Gram)").

Where the MRF term pulls every patch of the synthesised features toward its nearest style patch,
neural style matches only the features' second-order statistics: at each style layer the Gram
matrix of the synthesised features is pulled toward the style's,

    E_s = Σ_l w_l · mean((G_l(x) − G_l(x_s))²),     G = F Fᵀ / (C H W)   (dsanno's ``NeuralStyle``)

A Gram matrix forgets where each feature is, so the style's textures and colours spread over the
whole image; the MRF term keeps local structure. :func:`gram_terms` builds a level's terms from
one network pass per style image; :func:`chainer_mrf.losses.gram_loss` is the functional twin.
"""
import chainer

from chainer_mrf import losses


class GramTerm:
    """E_s of neural style at one layer and level: ``term(feature)`` is the layer's energy.

    Args:
        target (array): the style's Gram matrix at this layer (C, C), on the features' device.
        weight (float): the layer's weight. Default: 100.0 (dsanno).

    Shape:
        feature (the call's argument): (1, C, H, W). Output: ().

    Examples:
        >>> term = GramTerm(losses.gram_matrix(style_features).array)  # doctest: +SKIP
        >>> term(vgg(x, layers=['relu3_3'])['relu3_3']).backward()  # doctest: +SKIP
    """

    def __init__(self, target, weight=100.0):
        self.target = target
        self.weight = weight

    def __call__(self, feature):
        return losses.gram_loss(feature, self.target, self.weight)


def gram_terms(vgg, styles, config):
    """The :class:`GramTerm` of every style layer at one level, in ``config.style_layers``' order.

    With several style images, a layer's target is the mean of their Gram matrices weighted by
    ``config.style_image_weights`` (each image 1 by default): one set of statistics blending the
    styles, as the MRF term pools their patches.

    Args:
        vgg (chainer_mrf.vgg.VGG): the network, on the images' device.
        styles (list of array): the level's style images, (1, 3, H, W) each, after the colour
            options.
        config (chainer_mrf.presets.Preset): ``style_layers``, ``style_weight`` and
            ``style_image_weights``.

    Returns:
        list of GramTerm: one per style layer.
    """
    weights = config.style_image_weights or (1.0,) * len(styles)
    total = float(sum(weights))
    targets = {}
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        for style, weight in zip(styles, weights):
            # One image's features at a time: only its Gram matrices (C x C) are kept.
            features = vgg(style, layers=config.style_layers)
            for name in config.style_layers:
                gram = losses.gram_matrix(features[name]).array * (weight / total)
                targets[name] = gram if name not in targets else targets[name] + gram
    return [GramTerm(targets[name], weight)
            for name, weight in zip(config.style_layers, config.per_layer_weights())]
