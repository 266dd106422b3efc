#!/usr/bin/env bash
# Install the Debian font packages the notMNIST-style data set is rendered from (run as root).
#
# notMNIST (Bulatov, 2011) is letters A-J taken from thousands of publicly available fonts. We render
# the same letters from every Latin-capable font these packages give: text faces, display faces,
# handwriting and decorative ones (fonts-aenigma alone holds ~465 display faces). Packages missing
# from the configured Debian release are skipped with a note, so the script works across releases.
# The exact font files used are recorded in each build's provenance, with their count.
set -euo pipefail

PACKAGES=(
  fonts-aenigma fonts-urw-base35 fonts-texgyre fonts-liberation2 fonts-freefont-ttf fonts-dejavu-core
  fonts-dejavu-extra fonts-crosextra-caladea fonts-crosextra-carlito fonts-croscore fonts-ebgaramond
  fonts-linuxlibertine fonts-cantarell fonts-comic-neue fonts-lato fonts-open-sans fonts-roboto-unhinted
  fonts-roboto-slab fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius
  fonts-adf-ikarius fonts-adf-irianis fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania
  fonts-adf-romande fonts-adf-solothurn fonts-adf-switzera fonts-adf-tribun fonts-adf-universalis
  fonts-adf-verana fonts-dustin fonts-sjfonts fonts-humor-sans fonts-tomsontalks fonts-breip
  fonts-femkeklaver fonts-dkg-handwriting fonts-kristi fonts-rufscript fonts-staypuft fonts-summersby
  fonts-tuffy fonts-yanone-kaffeesatz fonts-cabin fonts-cabinsketch fonts-comfortaa fonts-quicksand
  fonts-dosis fonts-oldstandard fonts-vollkorn fonts-junicode fonts-sil-gentiumplus fonts-sil-charis
  fonts-sil-andika fonts-sil-doulos fonts-go fonts-hack fonts-inconsolata fonts-jetbrains-mono
  fonts-firacode fonts-courier-prime fonts-lobster fonts-lobstertwo fonts-dancingscript
  fonts-kaushanscript fonts-leckerli-one fonts-cherrybomb fonts-bebas-neue fonts-league-spartan
  fonts-blankenburg fonts-gamaliel fonts-gotico-antiqua fonts-goudybookletter fonts-isabella fonts-jura
  fonts-karla fonts-manrope fonts-inter fonts-b612 fonts-beteckna fonts-averia-gwf fonts-averia-sans-gwf
  fonts-averia-serif-gwf fonts-arapey fonts-allerta fonts-apropal fonts-bajaderka fonts-century-catalogue
  fonts-compagnon fonts-eurofurence fonts-engadget fonts-fanwood fonts-lindenhill fonts-prociono
  fonts-quattrocento fonts-radisnoir fonts-play fonts-opendin fonts-osifont fonts-ocr-a fonts-ocr-b
  fonts-okolaks fonts-levien-museum fonts-levien-typoscript fonts-gnutypewriter fonts-stix fonts-cmu
  fonts-lmodern fonts-oxygen fonts-sora fonts-klaudia-berenika fonts-le-murmure fonts-millimetre
  fonts-junction fonts-paratype fonts-roadgeek fonts-routed-gothic fonts-ecolier-court fonts-essays1743
  fonts-clear-sans fonts-solide-mirage fonts-ferrite-core fonts-fantasma fonts-havana fonts-joscelyn
  fonts-elstob fonts-cardo fonts-national-park fonts-mononoki fonts-anonymous-pro fonts-agave
  fonts-3270 fonts-hermit fonts-monofur fonts-fantasque-sans fonts-league-mono fonts-karmilla
  fonts-lemonada fonts-gfs-neohellenic fonts-tiresias fonts-opendyslexic fonts-bwht fonts-klee
  fonts-ubuntu-title fonts-train fonts-stick fonts-uralic fonts-triod-postnaja fonts-georgewilliams
  fonts-mph-2b-damase fonts-babelstone-modern fonts-johnsmith-induni fonts-linex fonts-arkpandora
)

if [ "${SKIP_APT_UPDATE:-0}" != 1 ]; then
  apt-get update -qq
fi
available=()
for p in "${PACKAGES[@]}"; do
  if apt-cache show "$p" >/dev/null 2>&1; then available+=("$p"); else echo "install_fonts: $p not in this release, skipped" >&2; fi
done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${available[@]}"
echo "install_fonts: installed ${#available[@]} of ${#PACKAGES[@]} font packages"
