#!/usr/bin/env bash
# Register MusicLens with the desktop for the current user: a menu entry with our icon,
# and "Open with MusicLens" for audio and MIDI files (the file manager runs
# `musiclens gui FILE`). Nothing needs root; nothing outside $XDG_DATA_HOME is touched.
#
#   packaging/install-desktop.sh [--exec PROGRAM]     install (again: replaces the old one)
#   packaging/install-desktop.sh --uninstall          remove everything it installed
#
# PROGRAM is the `musiclens` program the menu entry starts. Default: the app bundle this
# script sits in (dist/musiclens/install-desktop.sh, copied there by build_bundle.sh), else
# this checkout's .venv/bin/musiclens, else `musiclens` on PATH.
#
# Writes into ${XDG_DATA_HOME:-~/.local/share}:
#   applications/musiclens.desktop, icons/hicolor/<N>x<N>/apps/musiclens.png,
#   icons/hicolor/scalable/apps/musiclens.svg, and musiclens/installed-files (what it wrote,
#   so --uninstall removes exactly that, plus the folders it had to create).
# Then refreshes the desktop's caches with update-desktop-database (and
# gtk-update-icon-cache where an icon cache already exists) when those tools are there;
# without them the files alone work once the desktop rescans (at the next login at worst).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-}
case $data in /*) ;; *) data=$HOME/.local/share ;; esac  # unset, empty or relative: the default
apps=$data/applications
icons=$data/icons/hicolor
state=$data/musiclens
manifest=$state/installed-files
desktop_name=musiclens.desktop

say() { printf 'install-desktop: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# mkdirs DIR: create DIR and its missing parents, recording each created folder in $created.
created=()
mkdirs() {
  local d=$1 missing=()
  while [ ! -d "$d" ]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
  for d in "${missing[@]}"; do mkdir "$d"; created+=("$d"); done
}

refresh_caches() {
  if [ -d "$apps" ] && command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$apps" || say "update-desktop-database failed (ignored)"
  fi
  if [ -d "$icons" ]; then
    touch "$icons"  # icon themes reload when their folder's time changes
    if [ -f "$icons/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
      gtk-update-icon-cache -q -f -t "$icons" || say "gtk-update-icon-cache failed (ignored)"
    fi
  fi
}

uninstall() {
  local kind path dirs=() removed=0
  if [ -f "$manifest" ]; then
    while IFS=' ' read -r kind path; do
      case $kind in
        file) if [ -e "$path" ]; then rm -f "$path"; removed=$((removed + 1)); fi ;;
        dir) dirs=("$path" "${dirs[@]}") ;;  # reverse order: deepest first
      esac
    done < "$manifest"
    rm -f "$manifest"
  else  # installed by an older script, or by hand: remove the well-known names
    for path in "$apps/$desktop_name" "$icons"/*/apps/musiclens.png "$icons/scalable/apps/musiclens.svg"; do
      if [ -e "$path" ]; then rm -f "$path"; removed=$((removed + 1)); fi
    done
  fi
  refresh_caches
  # A MIME cache that only existed for us goes too (update-desktop-database made it).
  if [ -f "$apps/mimeinfo.cache" ] && ! compgen -G "$apps/*.desktop" >/dev/null; then
    rm -f "$apps/mimeinfo.cache"
  fi
  for path in "${dirs[@]}"; do rmdir "$path" 2>/dev/null || true; done  # only if empty
  [ -d "$state" ] && rmdir "$state" 2>/dev/null || true
  say "removed $removed file(s) from $data"
}

# desktop_quote ARG: ARG as one argument of an Exec key (Desktop Entry spec, "Exec key").
desktop_quote() {
  local s=$1
  if [[ $s =~ ^[A-Za-z0-9/._+,:@-]+$ ]]; then printf '%s' "$s"; return; fi
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//\`/\\\`}; s=${s//\$/\\\$}
  s=${s//\\/\\\\}  # the value itself is a string, so its backslashes are escaped once more
  printf '"%s"' "$s"
}

install() {
  local program=$1 src_icons="" d n
  for d in "$here/../resources/icons" "$here/_internal/resources/icons" "$here/resources/icons"; do
    if [ -f "$d/musiclens.svg" ]; then src_icons=$(cd "$d" && pwd); break; fi
  done
  [ -n "$src_icons" ] || die "cannot find the icons (resources/icons/musiclens.svg) near $here"
  [ -f "$here/$desktop_name" ] || die "cannot find $here/$desktop_name"
  if [ -f "$manifest" ]; then uninstall 2>/dev/null; fi
  local files=()
  mkdirs "$apps"
  local line exec_line
  exec_line="Exec=$(desktop_quote "$program") gui %f"
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      Exec=*) printf '%s\n' "$exec_line" ;;
      TryExec=*) printf 'TryExec=%s\n' "$program" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done < "$here/$desktop_name" > "$apps/$desktop_name"
  files+=("$apps/$desktop_name")
  for d in "$src_icons"/hicolor/*x*/apps/musiclens.png; do
    n=$(basename "$(dirname "$(dirname "$d")")")
    mkdirs "$icons/$n/apps"
    cp "$d" "$icons/$n/apps/musiclens.png"
    files+=("$icons/$n/apps/musiclens.png")
  done
  mkdirs "$icons/scalable/apps"
  cp "$src_icons/musiclens.svg" "$icons/scalable/apps/musiclens.svg"
  files+=("$icons/scalable/apps/musiclens.svg")
  mkdirs "$state"
  {
    for d in "${created[@]}"; do printf 'dir %s\n' "$d"; done
    for d in "${files[@]}"; do printf 'file %s\n' "$d"; done
  } > "$manifest"
  refresh_caches
  say "installed ${#files[@]} file(s) into $data; the menu entry runs: $exec_line"
}

mode=install program=""
while [ $# -gt 0 ]; do
  case $1 in
    --uninstall) mode=uninstall ;;
    --exec) [ $# -ge 2 ] || die "--exec needs a program"; program=$2; shift ;;
    --exec=*) program=${1#--exec=} ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
  shift
done

if [ "$mode" = uninstall ]; then uninstall; exit 0; fi
if [ -z "$program" ]; then
  for candidate in "$here/musiclens" "$here/../.venv/bin/musiclens"; do
    if [ -f "$candidate" ] && [ -x "$candidate" ]; then program=$candidate; break; fi
  done
  [ -n "$program" ] || program=$(command -v musiclens 2>/dev/null) \
    || die "no musiclens program found: build the bundle (packaging/build_bundle.sh), run ./run-app once, or pass --exec PROGRAM"
fi
[ -f "$program" ] && [ -x "$program" ] || die "$program is not an executable program"
program=$(cd "$(dirname "$program")" && pwd -P)/$(basename "$program")  # absolute, no ..
install "$program"
