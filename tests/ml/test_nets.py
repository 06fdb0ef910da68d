import pytest
import torch

from ml.nets import AudioCNN, ImageCNN, PointNetClassifier, PointNetSegmenter, build_net, default_arch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _eval(net):
    return net.eval()


def test_image_cnn_shapes_and_embedding():
    torch.manual_seed(0)
    net = _eval(ImageCNN(5))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        emb = net.forward_features(x)
        logits = net(x)
    assert emb.shape == (4, 128)
    assert logits.shape == (4, 5)
    # forward == head(embedding) in eval mode (dropout off)
    torch.testing.assert_close(net.logits_from_embedding(emb), logits)


@pytest.mark.parametrize("frames", [5, 32, 63, 101])
def test_audio_cnn_accepts_any_number_of_frames(frames):
    torch.manual_seed(0)
    net = _eval(AudioCNN(3))
    with torch.no_grad():
        out = net(torch.randn(2, 1, 64, frames))
        emb = net.forward_features(torch.randn(2, 1, 64, frames))
    assert out.shape == (2, 3)
    assert emb.shape == (2, 128)
    assert torch.isfinite(out).all()


def test_pointnet_classifier_is_invariant_to_point_order():
    torch.manual_seed(0)
    net = _eval(PointNetClassifier(4))
    x = torch.randn(3, 200, 3)
    perm = torch.randperm(200)
    with torch.no_grad():
        a, b = net(x), net(x[:, perm])
        emb = net.forward_features(x)
    assert a.shape == (3, 4)
    assert emb.shape == (3, 128)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_pointnet_segmenter_per_point_output_follows_points():
    torch.manual_seed(0)
    net = _eval(PointNetSegmenter(6))
    x = torch.randn(2, 150, 3)
    perm = torch.randperm(150)
    with torch.no_grad():
        logits, emb = net.forward_with_embedding(x)
        logits_perm = net(x[:, perm])
    assert logits.shape == (2, 150, 6)
    assert emb.shape == (2, 128)
    # per-point outputs permute with the points (the global feature is order-free)
    torch.testing.assert_close(logits[:, perm], logits_perm, atol=1e-5, rtol=1e-5)


def test_dropout_sits_after_the_embedding_for_mc_dropout():
    torch.manual_seed(0)
    net = ImageCNN(4).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        e1, e2 = net.forward_features(x), net.forward_features(x)
        o1, o2 = net(x), net(x)
    torch.testing.assert_close(e1, e2)  # embedding unaffected by dropout
    assert not torch.equal(o1, o2)  # logits are stochastic with dropout on


def test_build_net_from_arch_dict_and_errors():
    arch = default_arch("image", widths=(8, 16, 32), embed_dim=64)
    assert arch == {"name": "image_cnn", "widths": [8, 16, 32], "embed_dim": 64}
    net = build_net(arch, 3)
    assert net.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert default_arch("pointcloud", "segmentation")["name"] == "pointnet_seg"
    with pytest.raises(ValueError):
        build_net({"name": "resnet9000"}, 3)
    with pytest.raises(ValueError):
        default_arch("audio", "segmentation")


def test_nets_are_small_enough_for_cpu_training():
    sizes = {
        name: sum(p.numel() for p in build_net({"name": name}, 10).parameters())
        for name in ("image_cnn", "audio_cnn", "pointnet_cls", "pointnet_seg")
    }
    assert all(20_000 < n < 1_000_000 for n in sizes.values()), sizes
