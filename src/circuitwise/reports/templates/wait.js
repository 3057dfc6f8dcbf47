{# Draw now if the library is on the page, else when it arrives (it comes with the first output of a
   notebook that needs it); say so in the figure's place if it never does. #}
(function(lib,id,draw){if(window[lib]){draw();return;}(window.cwQueue=window.cwQueue||[]).push([lib,draw]);setTimeout(function(){var el=document.getElementById(id);if(!window[lib]&&el){el.textContent=lib+" is not on this page: it comes with the first circuitwise output of the notebook that draws with it. Run circuitwise.reports.display.resend_libraries(), then display this result again.";}},5000);})({{ lib }},{{ target }},function(){
{{ body }}
});
