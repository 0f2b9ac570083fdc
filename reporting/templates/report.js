(function(){
  var button=document.getElementById('expand');
  var failures=document.querySelectorAll('details.failure');
  if(button&&failures.length){
    button.hidden=false;
    button.addEventListener('click',function(){
      var open=button.getAttribute('data-open')!=='1';
      failures.forEach(function(d){d.open=open;});
      button.setAttribute('data-open',open?'1':'0');
      button.textContent=open?'Collapse all failures':'Expand all failures';
    });
  }
  var closed=[];
  window.addEventListener('beforeprint',function(){
    closed=[];document.querySelectorAll('details:not([open])').forEach(function(d){closed.push(d);d.open=true;});
  });
  window.addEventListener('afterprint',function(){closed.forEach(function(d){d.open=false;});});
})();
