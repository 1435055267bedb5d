"""The CPU allocator settings `medaug` applies to its own process (medaug.allocator)."""


def test_steady_cpu_allocator_sets_glibc_thresholds_unless_told_not_to(monkeypatch):
    import platform

    from medaug.allocator import steady_cpu_allocator

    monkeypatch.setenv("MEDAUG_MALLOC", "default")
    assert steady_cpu_allocator() is False
    monkeypatch.delenv("MEDAUG_MALLOC")
    assert steady_cpu_allocator() is (platform.libc_ver()[0] == "glibc")
