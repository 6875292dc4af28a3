# Sphinx settings of teamflow.platform's collection docs site: `make docs`
# (tools/collection_docs.sh) renders the collection with antsibull-docs into
# reStructuredText and builds HTML from it with warnings as errors.
#
# The site links other collections' modules and Ansible's reference pages
# (M(ansible.builtin.uri), the common return values). Sphinx would resolve them
# through intersphinx inventories downloaded from docs.ansible.com; the build
# runs offline instead and turns exactly those references into links to
# docs.ansible.com (resolve_ansible_reference below). A reference to anything of
# this collection that does not exist still fails the build.

project = "teamflow.platform"
copyright = "TeamFlow platform engineering"
title = "teamflow.platform"
html_short_title = "teamflow.platform"

extensions = ["sphinx_antsibull_ext"]

pygments_style = "ansible"
highlight_language = "YAML+Jinja"

html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = "any"
nitpicky = True

ANSIBLE_DOCS = "https://docs.ansible.com/ansible/latest/"
# Labels of Ansible's own documentation that antsibull-docs' pages refer to.
ANSIBLE_PAGES = {
    "common_return_values": "reference_appendices/common_return_values.html",
    "ansible_configuration_settings": "reference_appendices/config.html",
}
OWN_COLLECTION = "ansible_collections.teamflow.platform."


def resolve_ansible_reference(app, env, node, contnode):
    """A link to docs.ansible.com for another collection's plugin or one of ANSIBLE_PAGES; None otherwise."""
    from docutils import nodes

    target = node.get("reftarget", "")
    if target in ANSIBLE_PAGES:
        url = ANSIBLE_DOCS + ANSIBLE_PAGES[target]
    elif target.startswith("ansible_collections.") and not target.startswith(OWN_COLLECTION):
        # ansible_collections.NS.NAME.PLUGIN_TYPE[__parameter-OPTION]
        page, _, anchor = target.partition("__")
        namespace, name, plugin = page.split(".")[1:4]
        url = f"{ANSIBLE_DOCS}collections/{namespace}/{name}/{plugin}.html"
        if anchor:
            url += "#" + anchor
    else:
        return None
    reference = nodes.reference("", "", internal=False, refuri=url)
    reference.append(contnode)
    return reference


def setup(app):
    app.connect("missing-reference", resolve_ansible_reference)
