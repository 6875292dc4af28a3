# Replaced by `make release` in the copy it builds from: the release version, and
# whether this build is the deliberately broken one the deploy tests roll back.
VERSION = "0.0.0.dev0"
BROKEN = ""
