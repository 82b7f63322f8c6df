"""Packages: the release tarball (make dist) builds a lintian-clean .deb
(packaging/debian) and an .rpm (packaging/rpm/bcdad.spec), each with the
expected files; the .deb installs into a scratch root, where its maintainer
scripts create the bcdad user and groups and the state directory and enable
nothing.  The builds skip make check (DEB_BUILD_OPTIONS=nocheck, --without
check): make check is what runs this.  Not under ASan (BUILD=build/asan):
the packages build their own release binary."""
import glob
import os
import shutil
import stat
import subprocess
import sys
import harness
from harness import check

REPO = harness.REPO
VERSION = "0.1.0"

# What both packages hold, besides the units and the docs' layout.
COMMON = {
    "/etc/bcdad/bcdad.conf.example",
    "/usr/bin/bcdad",
    "/usr/libexec/bcdad/bcdad-daemon",
    "/usr/lib/sysusers.d/bcdad.conf",
    "/usr/lib/tmpfiles.d/bcdad.conf",
}
UNITS = ("bcdad.service", "bcdad.socket", "bcdad-run@.service", "bcdad-run@.timer")

# Debian's rpm lacks Fedora's systemd macros: they are defined here (empty
# scriptlets), as systemd-rpm-macros defines them on Fedora and AL2023.
RPM_DEFINES = [
    "_unitdir /usr/lib/systemd/system", "_sysusersdir /usr/lib/sysusers.d",
    "_tmpfilesdir /usr/lib/tmpfiles.d", "build_ldflags -Wl,-z,relro,-z,now",
    "systemd_post() :", "systemd_preun() :", "systemd_postun_with_restart() :",
    "sysusers_create_compat() :",
]


def skipped():
    if "asan" in os.environ.get("BUILD", ""):
        print("skipped under ASan: the packages build their own binary", file=sys.stderr)
        return True
    missing = [t for t in ("dpkg-buildpackage", "lintian", "rpmbuild", "dh")
               if shutil.which(t) is None]
    if missing:
        raise harness.TestFailure("missing %s: run make deps" % ", ".join(missing))
    return False


def make(*args, env=None):
    r = subprocess.run(["make", "--no-print-directory"] + list(args), cwd=REPO,
                       capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, **(env or {})))
    check(r.returncode == 0, "make %s failed:\n%s%s" % (" ".join(args), r.stdout[-3000:],
                                                      r.stderr[-3000:]))
    return r


def paths(listing):
    """Files (not directories) of a package listing, as absolute paths."""
    return {p for p in listing if p and not p.endswith("/")}


def test_deb_builds_lintian_clean_and_installs(env):
    if skipped():
        return
    make("deb", env={"DEB_BUILD_OPTIONS": "nocheck"})
    debs = glob.glob(os.path.join(REPO, "build/deb/bcdad_%s-*_*.deb" % VERSION))
    check(len(debs) == 1, "expected one .deb, got %r" % debs)
    deb = debs[0]
    changes = glob.glob(os.path.join(REPO, "build/deb/bcdad_%s-*.changes" % VERSION))
    r = subprocess.run(["lintian", "--fail-on", "error,warning"] + changes,
                       capture_output=True, text=True, timeout=300)
    tags = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
    check(r.returncode == 0 and not tags, "lintian:\n%s%s" % (r.stdout, r.stderr))

    listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True,
                             check=True).stdout
    names = subprocess.run(["tar", "-t"], input=listing, capture_output=True,
                           check=True).stdout.decode().splitlines()
    got = paths(n[1:] for n in names)
    want = COMMON | {"/lib/systemd/system/" + u for u in UNITS} | {
        "/usr/share/doc/bcdad/README.md.gz", "/usr/share/doc/bcdad/iam-policy.json",
        "/usr/share/doc/bcdad/copyright", "/usr/share/doc/bcdad/changelog.Debian.gz",
        "/usr/share/man/man5/bcdad.conf.5.gz", "/usr/share/man/man8/bcdad.8.gz",
        "/usr/share/lintian/overrides/bcdad"}
    check(got == want, "deb files: missing %s, unexpected %s" % (sorted(want - got),
                                                                 sorted(got - want)))

    # A scratch root: dpkg's database, and the maintainer scripts run
    # outside a chroot with DPKG_ROOT set (systemd-sysusers --root ...).
    root = os.path.join(env.dir, "root")
    os.makedirs(os.path.join(root, "var/lib/dpkg/info"))
    os.makedirs(os.path.join(root, "var/lib/dpkg/updates"))
    os.makedirs(os.path.join(root, "etc"))
    open(os.path.join(root, "var/lib/dpkg/status"), "w").close()
    r = subprocess.run(["dpkg", "--root=" + root, "--force-script-chrootless",
                        "--force-depends", "--log=/dev/null", "-i", deb],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, "dpkg -i into a scratch root:\n%s%s" % (r.stdout, r.stderr))
    passwd = open(os.path.join(root, "etc/passwd")).read()
    group = open(os.path.join(root, "etc/group")).read()
    user = [l.split(":") for l in passwd.splitlines() if l.startswith("bcdad:")]
    check(user and user[0][5] == "/var/lib/bcdad" and user[0][6] == "/usr/sbin/nologin",
          "no bcdad system user: %r" % passwd)
    check(int(user[0][2]) < 1000, "bcdad is not a system user: uid %s" % user[0][2])
    for g in ("bcdad", "bcdad-ctl"):
        check(any(l.startswith(g + ":") for l in group.splitlines()),
              "no group %s: %r" % (g, group))
    st = os.stat(os.path.join(root, "var/lib/bcdad"))
    check(stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == int(user[0][2]),
          "/var/lib/bcdad mode %o uid %d" % (stat.S_IMODE(st.st_mode), st.st_uid))
    # Enabled nothing by itself: no unit linked into a target.
    wants = glob.glob(os.path.join(root, "etc/systemd/system/*.wants/*"))
    check(not wants, "the package enabled units: %r" % wants)
    st = os.stat(os.path.join(root, "usr/bin/bcdad"))
    check(stat.S_IMODE(st.st_mode) == 0o755, "bcdad mode %o" % stat.S_IMODE(st.st_mode))
    r = subprocess.run([os.path.join(root, "usr/bin/bcdad"), "-v"], capture_output=True,
                       text=True, timeout=10)
    check(r.stdout.strip() == "bcdad " + VERSION, "packaged bcdad -v: %r" % r.stdout)
    r = subprocess.run([os.path.join(root, "usr/libexec/bcdad/bcdad-daemon"), "-v"],
                       capture_output=True, text=True, timeout=10)
    check(r.stdout.strip() == "bcdad " + VERSION, "packaged bcdad-daemon -v: %r" % r.stdout)


def test_rpm_builds_with_its_file_list(env):
    if skipped():
        return
    opts = ["--without=check", "--nodeps"]
    for d in RPM_DEFINES:
        opts += ["--define", d]
    make("rpm", "RPM_OPTS=" + " ".join("'%s'" % o for o in opts))
    rpms = glob.glob(os.path.join(REPO, "build/rpm/RPMS/*/bcdad-%s-*.rpm" % VERSION))
    rpms = [p for p in rpms if "debug" not in os.path.basename(p)]
    check(len(rpms) == 1, "expected one .rpm, got %r" % rpms)
    r = subprocess.run(["rpm", "-qlp", "--nodigest", "--nosignature", rpms[0]],
                       capture_output=True, text=True, timeout=60, check=True)
    got = {p for p in r.stdout.splitlines() if "/.build-id" not in p}
    want = COMMON | {"/usr/lib/systemd/system/" + u for u in UNITS} | {
        "/etc/bcdad", "/usr/libexec/bcdad", "/usr/share/doc/bcdad",
        "/usr/share/doc/bcdad/README.md",
        "/usr/share/doc/bcdad/iam-policy.json", "/usr/share/man/man5/bcdad.conf.5",
        "/usr/share/man/man8/bcdad.8"}
    check(got == want, "rpm files: missing %s, unexpected %s" % (sorted(want - got),
                                                                 sorted(got - want)))
    r = subprocess.run(["rpm", "-qp", "--scripts", "--nodigest", "--nosignature", rpms[0]],
                       capture_output=True, text=True, timeout=60, check=True)
    for s in ("preinstall", "postinstall", "preuninstall", "postuninstall"):
        check(s in r.stdout, "no %s scriptlet: %s" % (s, r.stdout))
